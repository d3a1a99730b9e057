"""The input side: TFDS sources read with grain, decoding and augmentation, dataset builders."""
