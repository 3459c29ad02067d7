"""MaMI: the all-in-one medical image re-identifier used as the adversary by mami-deid."""
