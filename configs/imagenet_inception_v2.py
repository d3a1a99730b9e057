r"""ImageNet, Inception-v2 (BN-Inception): the paper's two-stage recipe (Talebi & Milanfar 2021).

    python -m learned_resize.main --config=configs/imagenet_inception_v2.py \
        --workdir=gs://BUCKET/inc2

Stages (each in `workdir/<stage>`; details and override recipes in
`learned_resize/imagenet_recipe.py`):
  baseline  Inception-v2 from scratch behind bilinear 224 -> 224 (i.e. the standard
            pipeline), SGD momentum 0.9, label smoothing 0.1, lr 0.05 per 256 images
            (batch 1024, 2 warm-up epochs), x0.94 every 2 epochs, 90 epochs, Inception crop;
  learned   from `baseline`'s classifier, a fresh learned resizer (n=16, r=1)
            448 -> 224 trained jointly, lr 0.005 per 256, 20 epochs.
Run one stage with --stages=learned; pick another resizer input with
--config.stages.learned.input_size='(368, 368)' (the paper tries 224, 256, 320, 368, 448).
Expected: the paper reports a gain from the learned resizer for Inception-v2, but
PAPERS.md has no figures for it; compare the two stages in `workdir/results.md`. For
orientation, TF-slim's reference checkpoint reaches 73.9% top-1 / 91.8% top-5.
Cost (`python -m learned_resize.flops`, XLA cost analysis, batch 1, eval mode):
3.78 -> 5.90 GFLOPs per image (XLA; 2 x GMACs: 3.86 -> 5.84).
Time (baseline + learned): TPU v4-8 40-49 min + 14-17 min; 8x A100 17-22 min + 6-8 min,
estimated as 3 x forward FLOPs per training image x 1,281,167 images per epoch at 40-50%
of the dense bf16 peak (v4: 275 TFLOP/s x 4 chips; A100: 312 TFLOP/s x 8). That is
compute-bound and optimistic: NVIDIA's measured 8x A100 ResNet-50 throughput is 16% MFU
by the same count, and small networks are bound by JPEG decoding on the hosts.
Needs TFDS `imagenet2012` prepared under --config.data.data_dir (see README).
"""

from learned_resize import imagenet_recipe


def get_config():
    return imagenet_recipe.imagenet_config("inception_v2")
