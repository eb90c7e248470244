"""Pipelines: containers run on every new commit of their input repos (DESIGN.md, Layers).

``spec`` parses and validates a pipeline spec; ``datums`` splits input commits into
datums and decides which of them a new job must run again. Both are pure logic.
"""
