"""
Train A2Gen (or an MMoE / PLE baseline) with Accelerate: the same code as ``a2gen train``, so it takes the same
arguments (``--help`` lists them).

    # one process (CPU or one GPU)
    python examples/train_accelerate.py --data data/sim --output runs/iag --epochs 3
    # data parallel on 8 GPUs of one machine
    accelerate launch --multi_gpu --num_processes 8 examples/train_accelerate.py --data data/sim --output runs/iag
    # two CPU processes (gloo), as the tests run it
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \
        --dynamo_backend no examples/train_accelerate.py --data data/sim --output runs/ddp

See docs/training.md for several machines, FSDP / DeepSpeed, mixed precision and resuming.
"""

import sys

from a2gen_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
