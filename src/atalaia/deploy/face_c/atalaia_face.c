// See atalaia_face.h. Generated projects compile this file unchanged; so do AtalaIA's host tests.
#include "atalaia_face.h"

#include <math.h>
#include <string.h>

static void unit_(float* v, int n) {
  float s = 0.0f;
  for (int i = 0; i < n; ++i) s += v[i] * v[i];
  float inv = 1.0f / fmaxf(sqrtf(s), 1e-12f);
  for (int i = 0; i < n; ++i) v[i] *= inv;
}

static void dequantize_(const int8_t* q, float* out) {
  for (int i = 0; i < ATALAIA_FACE_EMBEDDING_DIM; ++i)
    out[i] = ((float)q[i] - (float)ATALAIA_FACE_OUTPUT_ZERO_POINT) * ATALAIA_FACE_OUTPUT_SCALE;
}

int atalaia_face_embedding(const int8_t* output_q, const int8_t* mirror_output_q, float* embedding) {
  dequantize_(output_q, embedding);
  unit_(embedding, ATALAIA_FACE_EMBEDDING_DIM);
#if ATALAIA_FACE_MIRROR_TTA
  if (mirror_output_q == 0) return -1;
  float m[ATALAIA_FACE_EMBEDDING_DIM];
  dequantize_(mirror_output_q, m);
  unit_(m, ATALAIA_FACE_EMBEDDING_DIM);
  for (int i = 0; i < ATALAIA_FACE_EMBEDDING_DIM; ++i) embedding[i] += m[i];
  unit_(embedding, ATALAIA_FACE_EMBEDDING_DIM);
#else
  (void)mirror_output_q;
#endif
  return 0;
}

void atalaia_face_mirror_input(const int8_t* input_q, int8_t* mirrored_q) {
  const int s = ATALAIA_FACE_INPUT_SIZE;
  for (int y = 0; y < s; ++y)
    for (int x = 0; x < s; ++x) mirrored_q[y * s + x] = input_q[y * s + (s - 1 - x)];
}

void atalaia_gallery_init(atalaia_gallery_t* g) { memset(g, 0, sizeof(*g)); }

int atalaia_gallery_enrol(atalaia_gallery_t* g, int16_t person, const float* embedding) {
  if (g->count >= ATALAIA_FACE_MAX_TEMPLATES) return -1;
  memcpy(g->templates[g->count], embedding, sizeof(g->templates[0]));
  unit_(g->templates[g->count], ATALAIA_FACE_EMBEDDING_DIM);
  g->person[g->count] = person;
  return g->count++;
}

int atalaia_gallery_remove(atalaia_gallery_t* g, int16_t person) {
  int kept = 0, removed = 0;
  for (int i = 0; i < g->count; ++i) {
    if (g->person[i] == person) { ++removed; continue; }
    if (kept != i) {
      memcpy(g->templates[kept], g->templates[i], sizeof(g->templates[0]));
      g->person[kept] = g->person[i];
    }
    ++kept;
  }
  g->count = kept;
  return removed;
}

float atalaia_face_open_set_threshold(int templates, float open_far) {
  static const double far_[] = ATALAIA_FACE_TAIL_FAR;  // increasing pairwise FAR
  static const double th_[] = ATALAIA_FACE_TAIL_THRESHOLD;
  if (ATALAIA_FACE_TAIL_POINTS == 0 || templates < 1) return NAN;
  double p = 1.0 - pow(1.0 - (double)open_far, 1.0 / (double)templates);
  double lp = log10(p);
  if (lp <= log10(far_[0])) return (float)th_[0];
  for (int i = 1; i < ATALAIA_FACE_TAIL_POINTS; ++i) {
    double a = log10(far_[i - 1]), b = log10(far_[i]);
    if (lp <= b) return (float)(th_[i - 1] + (th_[i] - th_[i - 1]) * (lp - a) / (b - a));
  }
  return (float)th_[ATALAIA_FACE_TAIL_POINTS - 1];
}

atalaia_decision_t atalaia_face_decide(const atalaia_gallery_t* g, const float* embedding, float threshold) {
  atalaia_decision_t d = {0, -1, -2.0f, threshold};
  if (threshold < -1.0f) d.threshold = atalaia_face_open_set_threshold(g->count, 0.01f);
  for (int i = 0; i < g->count; ++i) {
    float s = 0.0f;
    for (int j = 0; j < ATALAIA_FACE_EMBEDDING_DIM; ++j) s += g->templates[i][j] * embedding[j];
    if (s > d.score) { d.score = s; d.person = g->person[i]; }
  }
  d.granted = d.person >= 0 && d.score >= d.threshold;
  return d;
}
