#!/usr/bin/env python3
"""PyTorch side of tests/import_torch.rs: a DIM model trained in PyTorch, saved
as state_dicts that `infomax import` must read, and PyTorch's Y on fixed inputs.

The model is the reference of scripts/torch/dim_ref.py (a narrow conv28 so
the fixture stays small: conv 8 and 16 channels, fc 32, Y 16, D = 32),
trained with JSD for 40 Adam steps (lr 1e-3, batch 64) on the first 1024
train images of the bundled Fashion-MNIST subset, then put in eval mode.

Writes, in tests/golden/:
  import_torch_dim.safetensors     the whole DIM module's state_dict
                                   (encoder.*, local_head.*, global_head.*,
                                   num_batches_tracked included), no metadata
  import_torch_folded.safetensors  the encoder with every BN fused into the
                                   conv/linear before it (torch.nn.utils.fusion),
                                   and the encoder config in its metadata
  import_torch_encoder.json        the encoder config (EncoderConfig JSON)
  import_torch_y.safetensors       x: the first 16 test images, normalised;
                                   y_bn: Y of the eval-mode module;
                                   y_folded: Y of the fused module

Usage: /root/.venvs/dim-anchors/bin/python tests/golden/make_import_torch.py
(the venv: scripts/torch/setup.sh)
"""

import gzip
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import save_file
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "scripts", "torch"))
import dim_ref as ref  # noqa: E402


def idx_images(path, n):
    with gzip.open(path, "rb") as f:
        data = f.read()
    count, rows, cols = (int.from_bytes(data[i:i + 4], "big") for i in (4, 8, 12))
    x = np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, 1, rows, cols)[:n]
    return torch.from_numpy((x.astype(np.float32) / 255.0 - 0.5) / 0.5)


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    data = os.path.join(ROOT, "data", "fashion-mnist-subset")
    train = idx_images(os.path.join(data, "train-images-idx3-ubyte.gz"), 1024)
    test = idx_images(os.path.join(data, "t10k-images-idx3-ubyte.gz"), 16)

    cfg = ref.conv28(conv1_out=8, conv2_out=16, fc_out=32, y_dim=16)
    model = ref.DIM(cfg, mi_units=32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for step in range(40):
        i = (step * 64) % 1024
        loss = ref.jsd_loss(model.scores(train[i:i + 64]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    enc = model.encoder
    with torch.no_grad():
        y_bn = enc(test)[2]

    # BN fused into the layer before it: a module without BN, with biases.
    fused = ref.Encoder(ref.conv28(conv1_out=8, conv2_out=16, fc_out=32, y_dim=16, bn=False))
    with torch.no_grad():
        fused.conv1 = fuse_conv_bn_eval(enc.conv1, enc.bn1)
        fused.conv2 = fuse_conv_bn_eval(enc.conv2, enc.bn2)
        fused.fc = fuse_linear_bn_eval(enc.fc, enc.bn3)
        fused.out.load_state_dict(enc.out.state_dict())
        y_folded = fused.eval()(test)[2]
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(HERE, "import_torch_dim.safetensors"))
    fsd = {k: v.contiguous() for k, v in fused.state_dict().items()}
    save_file(fsd, os.path.join(HERE, "import_torch_folded.safetensors"), metadata={"encoder_config": json.dumps(cfg)})
    with open(os.path.join(HERE, "import_torch_encoder.json"), "w") as f:
        json.dump(cfg, f, indent=1)
        f.write("\n")
    save_file({"x": test.contiguous(), "y_bn": y_bn.contiguous(), "y_folded": y_folded.contiguous()},
              os.path.join(HERE, "import_torch_y.safetensors"))
    print("loss after 40 steps", float(loss.detach()), "| max |y|", float(y_bn.abs().max()),
          "| fused vs unfused max |dy|", float((y_folded - y_bn).abs().max()))
    print("tensors:", len(sd), "(whole DIM),", len(fsd), "(fused encoder)")


if __name__ == "__main__":
    main()
