"""Motion correction kernels: rigid and nonrigid phase correlation, reference image, bidirectional phase, one-photon prefilter, bad frames and PC metrics."""
