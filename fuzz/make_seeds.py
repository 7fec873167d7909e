"""Writes the small seed corpora in fuzz/corpus (run from fuzz/)."""
import gzip
import os
import struct


def w(target, name, data):
    os.makedirs(f"corpus/{target}", exist_ok=True)
    with open(f"corpus/{target}/{name}", "wb") as f:
        f.write(data)


img = struct.pack(">IIII", 0x803, 2, 3, 3) + bytes(range(18))
lab = struct.pack(">II", 0x801, 3) + bytes([0, 9, 4])
w("idx", "images-2x3x3", img)
w("idx", "labels-3", lab)
w("idx", "truncated", img[:-1])
w("idx", "bad-magic", struct.pack(">I", 0x802) + img[4:])
# idx_gz: first byte 1 = gzip the rest in the harness, 0 = the rest is the stream after 1f 8b.
w("idx_gz", "valid-images", b"\x01" + img)
w("idx_gz", "valid-labels", b"\x01" + lab)
w("idx_gz", "stream-images", b"\x00" + gzip.compress(img, mtime=0)[2:])
w("idx_gz", "stream-labels", b"\x00" + gzip.compress(lab, mtime=0)[2:])
w("cifar", "cifar10-1", bytes([3]) + bytes(i % 256 for i in range(3072)))
w("cifar", "cifar100-1", bytes([19, 99]) + bytes(i % 256 for i in range(3072)))
w("stl10", "image-1", bytes((i * 7) % 256 for i in range(3 * 96 * 96)))
w("stl10", "labels", bytes([1, 2, 10, 5]))
w("config", "train.toml", b"""epochs = 1
batch_size = 8
seed = 3
[model]
encoder = "conv28"
mi_units = 64
estimator = "nce"
[data]
kind = "fashion-mnist"
dir = "data"
crop = 26
flip = true
[optimizer]
lr = 1e-4
beta1 = 0.5
beta2 = 0.999
eps = 1e-8
""")
w("config", "custom.toml", b'steps = 2\n[model.encoder]\ninput = [1, 8, 8]\nlayers = [{ type = "conv", out = 4, kernel = 3, stride = 1, padding = 1 }, { type = "linear", out = 16 }]\nlocal_layer = 0\ny_dim = 8\n[data]\nkind = "cifar10"\ndir = "x"\n')
w("config", "train.json", b'{"model":{"encoder":"edge","alpha":0.5,"gamma":0.1},"data":{"kind":"stl10","dir":"d"},"minutes":1.5,"freeze":["encoder.conv1"]}')
w("config", "dim.json", b'{"encoder":"conv32","head":"concat","estimator":"dv"}')
