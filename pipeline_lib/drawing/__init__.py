"""Drawing: class colours, overlays, confidence colouring, legends (panels) and class-share plots, for
`dars inspect`, `dars predict` and the experiment figures."""
