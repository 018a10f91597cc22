"""Face recognition that enrols new people: a grey int8 face-embedding student distilled from dlib's ResNet.

- `atalaia.face.data`: chip sets (labels.csv + chips + stored dlib embeddings), grey, resized to the student.
- `atalaia.face.train`: the student (`build_student`) and its training (`train_embedding`): CosFace/ArcFace
  margin head + cosine KD (through a learned projection when dims differ) + relational KD.
- `atalaia.face.evalset`: the LFW pairs / open-set evaluation set and `verification_summary`.
- `atalaia.face.pipeline`: `FacePipeline(recipe, out_dir).run()` for `task: verification` recipes.
"""
