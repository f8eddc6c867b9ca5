"""Training: the phase trainers of Algorithm 1, running a phase on disk, N_R pretraining."""
