"""Adapters from public benchmark datasets to the project's scene layout (tools/make_multicam.py's output).

Each adapter reads a dataset in its own annotation format and writes the per-camera MOT ground truth,
``mtmc_gt.txt`` and ``cameras.json`` that tools/eval_mtmc.py and tools/association_lab.py read.
``people.py`` joins the ids a ground truth gives one person who comes back (``mtmc_gt_people.txt``).
"""
