"""Analyses of aligned and fine-tuned encoders: distances, gradients and their relations."""
