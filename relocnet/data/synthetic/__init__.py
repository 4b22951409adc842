"""SynthReloc: a procedurally rendered re-localization benchmark (no download needed).

actions.py (the action library), actors.py (articulated bodies), scene.py (backgrounds, camera,
occluders, frame rendering, box measurement), plan.py (seeded plans of videos and pairs),
generate.py (``generate(output, seed, preset)``: renders in parallel, writes a dataset directory).
"""
