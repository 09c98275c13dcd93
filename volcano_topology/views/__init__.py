"""Views of a HyperNode set: the terminal tree, exports (Slurm, Kueue, node labels, DOT, pictures) and diffs."""
