"""Behavioural baselines per workload: learn what each workload normally does, then alert
(kind ``behavior``) on the first occurrence of anything outside its profile.

Modules: ``normalize`` (events -> list items), ``unit`` (event -> workload), ``model``
(profiles and versions), ``engine`` (learn/monitor), ``codec``/``store`` (state files),
``alerts`` (behaviour and hybrid alerts), ``stage`` (the pipeline stage), ``sigma`` (export).
"""
