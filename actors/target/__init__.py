"""A run of several workers as a Ray Train run (`ray_train.py`), each worker running one rank of
target/fsdp_train.py; used by validate and by sweep trials that take several GPUs."""
