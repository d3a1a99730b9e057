"""Helpers shared by the tests: GCS emulator, CLI drivers, stand-in VGG, configs."""
