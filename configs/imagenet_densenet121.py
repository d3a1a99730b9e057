r"""ImageNet, DenseNet-121: the paper's two-stage recipe (Talebi & Milanfar 2021, sec. 4).

    python -m learned_resize.main --config=configs/imagenet_densenet121.py \
        --workdir=gs://BUCKET/d121

Stages (each in `workdir/<stage>`; details and override recipes in
`learned_resize/imagenet_recipe.py`):
  baseline  DenseNet-121 from scratch behind bilinear 224 -> 224 (i.e. the standard
            pipeline), SGD momentum 0.9, label smoothing 0.1, lr 0.05 per 256 images
            (batch 1024, 2 warm-up epochs), x0.94 every 2 epochs, 90 epochs, Inception crop;
  learned   from `baseline`'s classifier, a fresh learned resizer (n=16, r=1)
            448 -> 224 trained jointly, lr 0.005 per 256, 20 epochs.
Run one stage with --stages=learned; pick another resizer input with
--config.stages.learned.input_size='(368, 368)' (the paper tries 224, 256, 320, 368, 448).
Expected (paper, second-hand figures in PAPERS.md): top-5 error 12.8% (baseline) ->
10.8% (learned), at 5.67 -> 7.65 GFLOPs. For orientation, torchvision's reference
weights (its own recipe) reach 74.4% top-1 / 92.0% top-5.
Cost (`python -m learned_resize.flops`, XLA cost analysis, batch 1, eval mode):
5.81 -> 7.93 GFLOPs per image (XLA; 2 x GMACs: 5.67 -> 7.64, the paper's
5.67 -> 7.65).
Time (baseline + learned): TPU v4-8 1.0-1.3 h + 18-23 min; 8x A100 27-34 min + 8-10 min,
estimated as 3 x forward FLOPs per training image x 1,281,167 images per epoch at 40-50%
of the dense bf16 peak (v4: 275 TFLOP/s x 4 chips; A100: 312 TFLOP/s x 8). That is
compute-bound and optimistic: NVIDIA's measured 8x A100 ResNet-50 throughput is 16% MFU
by the same count, and small networks are bound by JPEG decoding on the hosts.
Needs TFDS `imagenet2012` prepared under --config.data.data_dir (see README).
"""

from learned_resize import imagenet_recipe


def get_config():
    return imagenet_recipe.imagenet_config("densenet121")
