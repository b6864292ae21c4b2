"""Training: every loss in one loop. See trainers/spec.py for the loss contract and trainers/loop.py for the loop."""
