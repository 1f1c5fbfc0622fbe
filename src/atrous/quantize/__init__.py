"""Compression: BN folding, cross-layer equalisation, bias correction, int8 PTQ, mixed precision,
QAT, structured pruning, fp16 weights, and the side-by-side comparison table."""
