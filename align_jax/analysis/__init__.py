"""Analyses of trained models against humans: behaviour (errors, calibration), and later plots and reports."""
