"""Regenerates the numpy-written fixtures in this directory.

The Go tests never run Python; these files pin what numpy actually writes.
Run from this directory with numpy installed:  python3 gen_testdata.py
"""
import io
import random

import numpy as np

fmt = np.lib.format


def save(name, arr, version=None):
    with open(name, "wb") as f:
        fmt.write_array(f, arr, version=version, allow_pickle=True)


save("f4_2x3.npy", np.arange(6, dtype=np.float32).reshape(2, 3) / 4 - 0.5)
save("f2_vec.npy", np.array([1.0, -2.5, 65504, 6e-8, 0.0, -0.0, np.inf, 1 / 3], dtype=np.float16))
save("f8_scalar.npy", np.array(3.25, dtype=np.float64))
save("i8_vec.npy", np.array([0, -1, 2**40, 7, -(2**63), 2**63 - 1], dtype=np.int64))
save("i4_2x2.npy", np.array([[1, -2], [2**31 - 1, -(2**31)]], dtype=np.int32))
save("f4_0x768.npy", np.zeros((0, 768), dtype=np.float32))
save("f4_3x2x2.npy", np.arange(12, dtype=np.float32).reshape(3, 2, 2))
save("f4_v2.npy", np.arange(6, dtype=np.float32).reshape(2, 3) / 4 - 0.5, version=(2, 0))
save("f4_v3.npy", np.arange(6, dtype=np.float32).reshape(2, 3) / 4 - 0.5, version=(3, 0))

# Rejected by the Go reader:
save("bad_fortran.npy", np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)))
save("bad_bigendian.npy", np.arange(3, dtype=">f4"))
save("bad_object.npy", np.array([1, "a"], dtype=object))
save("bad_structured.npy", np.zeros(2, dtype=[("a", "<f4"), ("b", "<i8")]))
save("bad_u1.npy", np.arange(3, dtype=np.uint8))

# Headers numpy writes for many shapes, one per line: descr, shape, hex.
random.seed(1)
shapes = [(), (0,), (1,), (3,), (2, 3), (5, 768), (8_000_000, 768), (123456789012, 4),
          (1, 2, 3, 4), (0, 768), (10**18,), (4096, 7, 100000000000, 0)]
# Shapes whose header is already a multiple of 64 bytes before padding:
# numpy then pads a further 64 bytes.
while len(shapes) < 200:
    nd = random.randint(0, 9)
    shapes.append(tuple(random.choice([0, 1, 7, 10, 99, 123, 4096, 10 ** random.randint(0, 12)])
                        for _ in range(nd)))
with open("numpy_headers.txt", "w") as out:
    out.write("# descr shape header-hex; written by numpy %s\n" % np.__version__)
    for i, shape in enumerate(shapes):
        descr = ["<f2", "<f4", "<f8", "<i4", "<i8"][i % 5]
        f = io.BytesIO()
        fmt.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": shape})
        out.write("%s %s %s\n" % (descr, ",".join(map(str, shape)) or "-", f.getvalue().hex()))
