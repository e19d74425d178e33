"""Looking at a round's pseudo labels (``dars inspect``): reading artifacts from the workspace or any
revision, image panels, the class-distribution plot and the HTML report."""
