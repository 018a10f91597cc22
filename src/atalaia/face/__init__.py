"""Face recognition that enrols new people: a grey int8 face-embedding student distilled from dlib's ResNet.

- `atalaia.face.data`: chip sets (labels.csv + chips + stored dlib embeddings), grey, resized to the student.
- `atalaia.face.train`: the student (`build_student`) and its training (`train_embedding`): CosFace/ArcFace
  margin head + cosine KD (through a learned projection when dims differ) + relational KD.
- `atalaia.face.views`: consistent teaching: K cached augmented views per chip, each with dlib's embedding.
- `atalaia.face.budget`: the size tiers S / M and a check of a recipe's student against its tier, untrained.
- `atalaia.face.makeset`: a user's aligned chips -> a chip set (labels.csv + dlib embeddings), `atalaia make-set`.
- `atalaia.face.evalset`: the LFW pairs / open-set evaluation set and `verification_summary`.
- `atalaia.face.teacher`: training chips with teacher targets, the teacher's LFW embeddings and costs.
- `atalaia.face.detect`, `atalaia.face.align5`: training/running the face detector on frames, and the on-device
  5-point alignment.
- `atalaia.face.frame`: a camera frame -> the recogniser's chip, as the device does it (letterbox, int8
  detector, largest face, one-warp alignment); the reference of `deploy/face_c/atalaia_face_frame.c`.
- `atalaia.face.access`: the door-access case study on a finished run (an application of a run, not a
  building block: it reads the run folder; `--detector` runs the frame path).
The plan that runs them is `atalaia.pipeline.verification`.
"""

__all__ = ["access", "align5", "budget", "data", "detect", "evalset", "frame", "makeset", "teacher", "train", "views"]
