"""The embedded default dataset: procedurally generated, long-tailed street scenes.

Every image is rendered from a small 3-D street model seen by a pinhole camera 1.3 m above flat
ground: a road flanked by sidewalks (sometimes grass strips), façades of buildings or trees on both
sides, an optional backdrop closing the street, and upright objects standing on the ground (trees,
poles with signs or lights, people, riders, bicycles, motorcycles, cars, trucks, buses, trams).
Objects are simple shapes whose sizes are given in metres, so perspective comes for free: things
lower in the image are nearer and bigger, and textures anchored to surfaces get finer with depth.

The 19 classes are Cityscapes' (train ids, colours; 255 = ignore). How often each object family
appears is set so that the average pixel shares follow Cityscapes' long tail (``TARGET_SHARES``);
tail classes are absent from most images, as in real data. Tail classes are made to look like
their head-class neighbours, with weaker cues that still separate them:

* rider ~ person: same body and clothing model, but seated on a bicycle/motorcycle;
* truck / bus / train ~ car: one shared paint palette; they differ in size, aspect, window bands,
  ribbed cargo boxes, rails under trams;
* terrain ~ vegetation: overlapping greens; terrain is flat ground with fine grain, vegetation is
  upright with coarse leafy blobs;
* wall / fence ~ building: building paints; walls are low with fine brick courses, fences a fine
  grid (see-through) instead of windows;
* sidewalk ~ road: overlapping greys; sidewalks have tile joints and a kerb, roads lane marks;
* motorcycle ~ bicycle, traffic sign / light ~ pole: attached to or shaped like each other.

Per-instance colour jitter, per-image lighting (gain, contrast, colour cast), cast shadows, blur
and Gaussian noise make colour alone insufficient. 30 % of the images have an ego-vehicle
bonnet at the bottom and some have unlabelled street clutter, both labelled 255 (ignore).

Image ``i`` depends only on ``(seed, i)``, so any subset can be generated in any order.

Modules, from the bottom up: ``classes`` (train ids, target long tail), ``palettes``, ``render``
(camera, canvas, masks, photometry), ``street`` (ground, façades, barriers), ``objects`` (upright
things), ``scene`` (what stands where, one image), ``dataset`` (the prepared dataset on disk).
"""
