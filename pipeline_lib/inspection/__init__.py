"""Looking at a round's pseudo labels (``dars inspect``): a round's artifacts from the workspace or any revision,
the images a report shows and the HTML report; it draws with ``pipeline_lib.drawing``."""
