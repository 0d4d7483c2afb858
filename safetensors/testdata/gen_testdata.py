"""Regenerates the fixtures written by the Python safetensors package.

The Go tests never run Python. Run from this directory with
`pip install safetensors numpy`:  python3 gen_testdata.py
"""
import numpy as np
import safetensors
from safetensors import TensorSpec
from safetensors.numpy import save_file

rng = np.random.default_rng(0)

# A miniature of the projector's state_dict: float32, PyTorch names.
model = {
    "input_proj.weight": rng.standard_normal((4, 3), dtype=np.float32),
    "input_proj.bias": rng.standard_normal((4,), dtype=np.float32),
    "residual_blocks.0.layers.1.weight": np.ones((4,), dtype=np.float32),
    "residual_blocks.0.layers.1.bias": np.zeros((4,), dtype=np.float32),
    "layer_norm.weight": np.array([1.5, -2.0], dtype=np.float32),
}
save_file(model, "model_f32.safetensors", metadata={"format": "pt"})

# Every dtype the Go reader converts, plus a scalar and an empty tensor.
# numpy has no bfloat16, so BF16 goes through the low-level serializer.
f16 = np.array([1.0, -2.5, 65504, 6e-8, np.inf], dtype=np.float16)
f64 = np.array([[0.1, -1e300], [3.0, 2.0**-1074]], dtype=np.float64)
i64 = np.array([0, -1, 2**62, -(2**63)], dtype=np.int64)
i32 = np.array([7, -(2**31)], dtype=np.int32)
u8 = np.array([0, 255], dtype=np.uint8)
bf16 = np.array([0x3F80, 0xC020, 0x7F7F, 0x0001, 0x8000], dtype=np.uint16)  # 1, -2.5, max, tiny, -0
scalar = np.array(2.5, dtype=np.float32)
empty = np.zeros((0, 3), dtype=np.float32)
arrays = {"f16": (f16, "float16"), "f64": (f64, "float64"), "i64": (i64, "int64"),
          "i32": (i32, "int32"), "u8": (u8, "uint8"), "bf16": (bf16, "bfloat16"),
          "scalar": (scalar, "float32"), "empty": (empty, "float32")}
specs = {name: TensorSpec(dtype=dt, shape=list(a.shape), data_ptr=a.ctypes.data, data_len=a.nbytes)
         for name, (a, dt) in arrays.items()}
safetensors.serialize_file(specs, "dtypes.safetensors", metadata={"note": "x<y & é"})
