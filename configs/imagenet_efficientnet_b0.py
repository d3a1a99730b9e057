r"""ImageNet, EfficientNet-B0: the paper's two-stage recipe (Talebi & Milanfar 2021, sec. 4).

    python -m learned_resize.main --config=configs/imagenet_efficientnet_b0.py \
        --workdir=gs://BUCKET/effb0

Stages (each in `workdir/<stage>`; details and override recipes in
`learned_resize/imagenet_recipe.py`):
  baseline  EfficientNet-B0 from scratch behind bilinear 224 -> 224 (i.e. the standard
            pipeline), SGD momentum 0.9, label smoothing 0.1, lr 0.05 per 256 images
            (batch 1024, 2 warm-up epochs), x0.94 every 2 epochs, 90 epochs, Inception crop;
  learned   from `baseline`'s classifier, a fresh learned resizer (n=16, r=1)
            448 -> 224 trained jointly, lr 0.005 per 256, 20 epochs.
Run one stage with --stages=learned; pick another resizer input with
--config.stages.learned.input_size='(368, 368)' (the paper tries 224, 256, 320, 368, 448).
Expected: the paper mentions EfficientNets without figures in PAPERS.md; compare the
two stages in `workdir/results.md`. For orientation, EfficientNet-B0 reaches about 77%
top-1 with its own recipe (RMSProp, AutoAugment, 350 epochs); this SGD recipe with 90
epochs will land lower. At 224 the resizer (0.99 GMACs) costs more than the network
(0.39 GMACs).
Cost (`python -m learned_resize.flops`, XLA cost analysis, batch 1, eval mode):
0.94 -> 3.07 GFLOPs per image (XLA; 2 x GMACs: 0.78 -> 2.74).
Time (baseline + learned): TPU v4-8 10-12 min + 7-9 min; 8x A100 4-5 min + 3-4 min,
estimated as 3 x forward FLOPs per training image x 1,281,167 images per epoch at 40-50%
of the dense bf16 peak (v4: 275 TFLOP/s x 4 chips; A100: 312 TFLOP/s x 8). That is
compute-bound and optimistic: NVIDIA's measured 8x A100 ResNet-50 throughput is 16% MFU
by the same count, and small networks are bound by JPEG decoding on the hosts.
Needs TFDS `imagenet2012` prepared under --config.data.data_dir (see README).
"""

from learned_resize import imagenet_recipe


def get_config():
    return imagenet_recipe.imagenet_config("efficientnet_b0")
