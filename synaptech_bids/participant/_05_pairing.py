"""Step 5: pair EEG electrodes with MEG magnetometers by distance.

The paper pairs each magnetometer with the electrodes in a 2–4 cm
neighbourhood. This step writes the full EEG × magnetometer distance matrix
and, for each magnetometer, the electrodes within ``pair_max_distance_cm``
(a magnetometer sits some 2–4 cm above the scalp, so the distance is never
small: that gap is part of the physics).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._04_coregister import SensorPositions

#: Column descriptions for the pairs table's JSON sidecar.
PAIRS_COLUMNS = {
    "meg_channel": {"Description": "MEG magnetometer"},
    "eeg_channel": {"Description": "EEG electrode paired with it"},
    "distance": {
        "Description": "Euclidean distance between the electrode and the "
        "magnetometer's coil centre, in head coordinates of this run",
        "Units": "cm",
    },
    "rank": {"Description": "1 for the closest electrode of this magnetometer"},
}


def distance_matrix(positions: SensorPositions) -> tuple[np.ndarray, list[str]]:
    """Return EEG × magnetometer distances in metres and the magnetometer names."""
    mag = np.array([t == "mag" for t in positions.meg_types])
    mag_pos = positions.meg_pos[mag]
    diff = positions.eeg_pos[:, None, :] - mag_pos[None, :, :]
    names = [n for n, is_mag in zip(positions.meg_names, mag) if is_mag]
    return np.linalg.norm(diff, axis=-1), names


def pair_sensors(positions: SensorPositions, max_distance_cm: float) -> pd.DataFrame:
    """Return, for each magnetometer, the electrodes within ``max_distance_cm``.

    Returns
    -------
    pairs : DataFrame
        Columns ``meg_channel, eeg_channel, distance (cm), rank``, sorted by
        magnetometer then distance. Magnetometers with no electrode in range
        have no rows.
    """
    dist, mag_names = distance_matrix(positions)
    dist_cm = 100.0 * dist
    rows = []
    for j, mag in enumerate(mag_names):
        order = np.argsort(dist_cm[:, j])
        close = [i for i in order if dist_cm[i, j] <= max_distance_cm]
        for rank, i in enumerate(close, start=1):
            rows.append((mag, positions.eeg_names[i], round(float(dist_cm[i, j]), 4), rank))
    return pd.DataFrame(rows, columns=list(PAIRS_COLUMNS))


def distance_table(positions: SensorPositions) -> pd.DataFrame:
    """The full EEG × magnetometer distance matrix (cm) as a TSV-ready table."""
    dist, mag_names = distance_matrix(positions)
    table = pd.DataFrame(np.round(100.0 * dist, 4), columns=mag_names)
    table.insert(0, "eeg_channel", positions.eeg_names)
    return table
