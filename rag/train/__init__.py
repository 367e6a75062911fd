"""Training: the data a model learns from and is measured on, and the runs that build models/."""
