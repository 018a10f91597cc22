// See atalaia_face_frame.h. Keep every step in the order of `atalaia.face.frame` / `atalaia.face.access`.
#include "atalaia_face_frame.h"

#include <math.h>
#include <string.h>

atalaia_det_params_t atalaia_detector_params(void) {
  atalaia_det_params_t p;
  p.grid_h = ATALAIA_DET_GRID_H;
  p.grid_w = ATALAIA_DET_GRID_W;
  p.stride = ATALAIA_DET_STRIDE;
  p.out_scale = (double)ATALAIA_DET_OUTPUT_SCALE;  // a float32 literal: exactly the model's scale
  p.out_zero_point = ATALAIA_DET_OUTPUT_ZERO_POINT;
  p.offset_gain = ATALAIA_DET_OFFSET_GAIN;
  p.size_gain = ATALAIA_DET_SIZE_GAIN;
  p.landmark_gain = ATALAIA_DET_LANDMARK_GAIN;
  p.size_unit = ATALAIA_DET_SIZE_UNIT;
  p.score_threshold = ATALAIA_DET_SCORE_THRESHOLD;
  p.nms_iou = ATALAIA_DET_NMS_IOU;
  p.max_detections = ATALAIA_DET_MAX_DETECTIONS;
  return p;
}

static void quantize_chip_(int8_t* t) {  // in place: the chip's grey levels (as uint8) -> int8 model input
  uint8_t* g = (uint8_t*)t;
  for (int i = 0; i < ATALAIA_FACE_INPUT_SIZE * ATALAIA_FACE_INPUT_SIZE; ++i) {
    const float x = (float)g[i] / 255.0f;
    long q = lrintf(x / ATALAIA_FACE_INPUT_SCALE) + ATALAIA_FACE_INPUT_ZERO_POINT;
    t[i] = (int8_t)(q < -128 ? -128 : (q > 127 ? 127 : q));
  }
}

// The recogniser's input, kept here: TFLM may reuse the input tensor's memory for activations during Invoke,
// so the mirrored pass (ATALAIA_FACE_MIRROR_TTA) must not read the chip back from the tensor.
static int8_t chip_q_[ATALAIA_FACE_INPUT_SIZE * ATALAIA_FACE_INPUT_SIZE];

int atalaia_face_frame_embedding(const uint8_t* frame, int w, int h, const atalaia_models_t* m, float* embedding,
                                 atalaia_frame_result_t* out) {
  static atalaia_detection_t dets[ATALAIA_DET_MAX_DETECTIONS];
  const atalaia_det_params_t p = atalaia_detector_params();
  memset(out, 0, sizeof(*out));
  out->decision.person = -1;
  int8_t* in = m->input(m->user, ATALAIA_MODEL_DETECTOR);
  if (in == 0) return out->status = ATALAIA_FRAME_ERROR;
  atalaia_letterbox_t lb = atalaia_letterbox(frame, w, h, ATALAIA_DET_INPUT_W, ATALAIA_DET_INPUT_H,
                                             ATALAIA_DET_INPUT_SCALE, ATALAIA_DET_INPUT_ZERO_POINT, in);
  const int8_t* det_out = m->invoke(m->user, ATALAIA_MODEL_DETECTOR);
  if (det_out == 0) return out->status = ATALAIA_FRAME_ERROR;
  int n = atalaia_face_detect_decode(det_out, &p, dets);
  for (int k = 0; k < n; ++k) atalaia_detection_to_frame(&dets[k], lb.scale, lb.pad_x, lb.pad_y);
  out->faces = n;
  int k = atalaia_pick_face(dets, n);
  if (k < 0) return out->status = ATALAIA_FRAME_NO_FACE;
  out->face = dets[k];
  in = m->input(m->user, ATALAIA_MODEL_RECOGNISER);  // the detector's tensors are gone from here on
  if (in == 0) return out->status = ATALAIA_FRAME_ERROR;
  atalaia_align_chip(frame, w, h, (const double(*)[2])out->face.points, ATALAIA_FACE_INPUT_SIZE,
                     (double)ATALAIA_FACE_CROP, (uint8_t*)chip_q_);
  quantize_chip_(chip_q_);
  memcpy(in, chip_q_, sizeof(chip_q_));
  const int8_t* e = m->invoke(m->user, ATALAIA_MODEL_RECOGNISER);
  if (e == 0) return out->status = ATALAIA_FRAME_ERROR;
  static int8_t plain[ATALAIA_FACE_EMBEDDING_DIM];
  memcpy(plain, e, ATALAIA_FACE_EMBEDDING_DIM);
  const int8_t* mirror = 0;
#if ATALAIA_FACE_MIRROR_TTA
  atalaia_face_mirror_input(chip_q_, in);
  mirror = m->invoke(m->user, ATALAIA_MODEL_RECOGNISER);
  if (mirror == 0) return out->status = ATALAIA_FRAME_ERROR;
#endif
  if (atalaia_face_embedding(plain, mirror, embedding) != 0) return out->status = ATALAIA_FRAME_ERROR;
  return out->status = ATALAIA_FRAME_OK;
}

int atalaia_face_frame_decide(const uint8_t* frame, int w, int h, const atalaia_models_t* m,
                              const atalaia_gallery_t* g, float threshold, atalaia_frame_result_t* out) {
  float emb[ATALAIA_FACE_EMBEDDING_DIM];
  if (atalaia_face_frame_embedding(frame, w, h, m, emb, out) != ATALAIA_FRAME_OK) return out->status;
  out->decision = atalaia_face_decide(g, emb, threshold);
  return out->status;
}
