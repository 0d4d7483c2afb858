#!/usr/bin/env bash
# experiments.sh: the recipe comparison of docs/EXPERIMENTS.md on synthetic
# data, on the CPU (a few minutes on 2 cores).
#
# Usage: scripts/experiments.sh [OUTDIR]     (default: work/experiments)
#        make experiments
#
# It builds the CLI into OUTDIR/bin, writes two synthetic data sets of one
# world (dinoclip synth, seed 0, 256 -> 128 wide): the base domain (20,000
# training rows) and a shifted domain (--latent-shift 4: 5,000 training rows
# around another point of the same latent space), each with its own 1000-image
# evaluation set, and trains a 256-wide, 2-block projector in the recipes of
# the table. Each model is evaluated with `dinoclip eval`; the table's number
# is the mean of the projection's text->image and image->text R@5, in %.
# Everything is seeded: the same commit on the same machine prints the same
# table (other CPUs may differ in the last digits: float32 GEMMs).
#
# Writes OUTDIR/table.md (the table, with the machine, date and commit) and
# prints it. Runs go to OUTDIR/runs, data to OUTDIR/data; an existing OUTDIR
# is reused only for the binary: data and runs are written anew.
set -euo pipefail

out=${1:-work/experiments}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
bin=$out/bin/dinoclip
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git -C "$root" diff --quiet HEAD 2>/dev/null; then commit="$commit-dirty"; fi

echo "== building the CLI ($commit)"
(cd "$root" && go build -ldflags "-X github.com/dinoclip/dinoclip/internal/buildinfo.Commit=$commit" -o "$bin" ./cmd/dinoclip)

rm -rf "$out/data" "$out/runs"
mkdir -p "$out/runs"
shape=(--input-dim 256 --output-dim 128)
model=(--hidden-dim 256 --blocks 2)
base=$out/data/base
shifted=$out/data/shifted

echo "== data"
"$bin" synth --out "$base" --rows 20000 "${shape[@]}" >/dev/null
"$bin" synth --out "$shifted" --rows 5000 --latent-shift 4 "${shape[@]}" >/dev/null

# train NAME DATA ARGS...: a run of 6 epochs at batch 256 on DATA, evaluated
# on DATA's evaluation set.
train() {
	local name=$1 data=$2
	shift 2
	echo "== train $name: $*"
	"$bin" train --data "$data/train" --eval "$data/eval" --out "$out/runs/$name" \
		--epochs 6 --batch 256 --seed 0 --log-every 0 "$@" >"$out/runs/$name.log" 2>&1
}

train base "$base" "${model[@]}" --ema 0.99 --keep 2
train infonce "$base" "${model[@]}" --loss infonce
train mse-infonce "$base" "${model[@]}" --loss mse+infonce --infonce-weight 0.01
# The soup: the last three epochs' checkpoints of the base run, by step
# (--keep 2 keeps the two before the last; an older best may be kept too).
mapfile -t soup < <(printf '%s\n' "$out"/runs/base/checkpoints/step-* | sort | tail -n 3)
[ ${#soup[@]} = 3 ] || { echo "experiments.sh: the base run left ${#soup[@]} checkpoints, want 3" >&2; exit 1; }
"$bin" average --out "$out/runs/soup.safetensors" "${soup[@]}"
# Fine-tuning: the base run's last model, 3 epochs on the shifted set at a
# lower peak learning rate; beside it, the same data from scratch.
echo "== train finetune: --init base"
"$bin" train --init "$out/runs/base/last" --data "$shifted/train" --eval "$shifted/eval" \
	--out "$out/runs/finetune" --epochs 3 --batch 256 --lr 3e-4 --seed 0 --log-every 0 >"$out/runs/finetune.log" 2>&1
train shifted-scratch "$shifted" "${model[@]}"

# r5 MODEL EVALSET: mean of the projection's text->image and image->text
# R@5 (the table of dinoclip eval: R@5 is the 5th recall column, the
# projection's, third from the end).
r5() {
	"$bin" eval --model "$1" --eval "$2" |
		awk '/text->image|image->text/ { s += $(NF-2); n++ } END { if (n != 2) exit 1; printf "%.2f", s / n }'
}

# Every number first, so that a failed evaluation stops the script (set -e)
# rather than leave an empty cell.
r5_base=$(r5 "$out/runs/base/last" "$base/eval")
r5_ema=$(r5 "$out/runs/base/last/ema.safetensors" "$base/eval")
r5_soup=$(r5 "$out/runs/soup.safetensors" "$base/eval")
r5_infonce=$(r5 "$out/runs/infonce/last" "$base/eval")
r5_mse_infonce=$(r5 "$out/runs/mse-infonce/last" "$base/eval")
r5_base_shifted=$(r5 "$out/runs/base/last" "$shifted/eval")
r5_finetune=$(r5 "$out/runs/finetune/last" "$shifted/eval")
r5_scratch=$(r5 "$out/runs/shifted-scratch/last" "$shifted/eval")
table=$out/table.md
{
	echo "| recipe | evaluated on | mean R@5 (%) |"
	echo "|---|---|---|"
	echo "| base recipe (unit-norm MSE), last epoch | base | $r5_base |"
	echo "| + EMA of the weights (decay 0.99) | base | $r5_ema |"
	echo "| soup of the last 3 epochs (dinoclip average) | base | $r5_soup |"
	echo "| InfoNCE | base | $r5_infonce |"
	echo "| MSE + 0.01 x InfoNCE | base | $r5_mse_infonce |"
	echo "| base recipe, not fine-tuned | shifted | $r5_base_shifted |"
	echo "| base fine-tuned on the shifted set (--init, 3 epochs) | shifted | $r5_finetune |"
	echo "| trained on the shifted set from scratch (6 epochs) | shifted | $r5_scratch |"
	echo
	echo "Measured by scripts/experiments.sh at commit $commit on $(date -u +%Y-%m-%d), $(uname -sm), $(nproc) CPUs$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: /, /')."
} >"$table"
cat "$table"
