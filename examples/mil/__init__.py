"""Multiple-instance learning examples: digit bags after Ilse et al. (ICML 2018), every pool on one protocol."""
