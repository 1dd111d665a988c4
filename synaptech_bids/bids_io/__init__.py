"""BIDS in and out: the input dataset, derivative paths, atomic writes, provenance.

Only this package, :mod:`synaptech_bids.participant` and
:mod:`synaptech_bids.group` know about files; estimators and translators
take arrays.
"""
