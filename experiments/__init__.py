"""The paper's experiments, run on the engine (`copd`) and recorded in the run store.

    copd reproduce ...   experiments/reproduce.py   main tables (paper Tables 1 and 2)
    copd pilot ...       experiments/pilot.py       OPD gain vs overlap (Fig. 2a/b)
    copd drift ...       experiments/drift.py       overlap drift of experts vs CoPD (Fig. 2c/d, 4a/b)

This package sits above the engine: it may import `copd`, `storage` and the pure chart
builders of `app`; the engine imports nothing from here. Its commands join the `copd` CLI
through the `copd.commands` entry point (`experiments.cli:register`).
"""
