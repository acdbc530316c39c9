"""What a miniscope lab runs after CNMF-E (the miniscope pipeline on CaImAn: its preprocessing's
detrending and dF/F, its postprocessing's event detection, Hilbert phase and multi-taper spectrogram),
on the components' traces: kernels (`traces`, `events`, `spectral`) and the step's plan (`graph`).
"""
