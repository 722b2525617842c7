"""A night's stages, one module each, in the order they run (``pipeline.nightly.STAGES``).

Each ``*_stage`` function reads its inputs from the run's folder and the store, calls the pure
functions of its stage (``pipeline.sources``, ``validate``, ``features``, ``embed``, ``score``,
``publish``, ``report``) and writes its outputs back; it returns a small summary for XCom.
"""
