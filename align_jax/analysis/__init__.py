"""Analyses of trained models against humans (behaviour: errors, calibration, consistency)."""
