"""MNE-BIDS-Pipeline configuration: the peer of synaptech-bids' participant level.

Used by ``benchmarks/bench_participant.py``, which runs

    mne_bids_pipeline --config benchmarks/mne_bids_pipeline_config.py \
        --steps init,preprocessing

with ``BENCH_BIDS_ROOT`` / ``BENCH_DERIV_ROOT`` pointing at the simulated
dataset and a scratch output folder. Every value below mirrors a default of
``synaptech_bids.config.Config`` (the benchmark checks that they still
agree before it runs anything): notch at the power-line harmonics the
band-pass keeps, 0.1–100 Hz band-pass, 250 Hz resampling, average EEG
reference, -0.5 to 1.5 s epochs with a -0.5 to 0 s baseline, and the same
peak-to-peak rejection. No Maxwell filter and no automatic bad-channel
search (synaptech-bids does neither). ``BENCH_SPATIAL_FILTER=ica`` turns on
the pipeline's ICA (EOG/ECG components), for the separate ICA comparison.
"""

import os

bids_root = os.environ["BENCH_BIDS_ROOT"]
deriv_root = os.environ["BENCH_DERIV_ROOT"]
subjects = ["01"]
sessions = ["meg"]
task = "facerecognition"
data_type = "meg"
# BENCH_CH_TYPES=meg: the MEG-only variant, for the ICA comparison (the
# pipeline's ICA aborts on MEG+EEG here: "No EEG ... channels found to rereference")
ch_types = os.environ.get("BENCH_CH_TYPES", "meg,eeg").split(",")
eeg_reference = "average"

use_maxwell_filter = False
find_flat_channels_meg = False
find_noisy_channels_meg = False

# synaptech_bids.participant._01_preprocess.line_frequencies(50, 100, 1100)
notch_freq = [50.0, 100.0]
l_freq = 0.1
h_freq = 100.0
raw_resample_sfreq = 250.0

conditions = ["Famous", "Unfamiliar", "Scrambled"]
epochs_tmin = -0.5
epochs_tmax = 1.5
baseline = (-0.5, 0.0)

# Config.reject_eeg_uv, reject_mag_ft, reject_grad_ft_cm in SI units
reject = {"eeg": 250e-6, "mag": 4000e-15, "grad": 4000e-15 / 1e-2}

spatial_filter = os.environ.get("BENCH_SPATIAL_FILTER") or None
# as synaptech-bids' ICA step: Picard with 5 FastICA warm-up iterations
# (both MNE-BIDS-Pipeline's default), 500 iterations at most, fitted on data
# decimated from 250 Hz to 62.5 Hz
ica_algorithm = "picard"
ica_max_iterations = 500
ica_decim = 4
ica_n_components = 30
ica_l_freq = 1.0
eog_channels = ["EEG061", "EEG062"]
ica_reject = None

n_jobs = 1
parallel_backend = "loky"
on_error = "abort"
random_state = 42
