// AtalaIA on-device face access control: turn the int8 model's output into an embedding, keep a gallery of
// enrolled templates in RAM, and decide exactly as `atalaia access check` does on the host (the same 1-NN
// rule, mirror fusion and gallery-size-dependent threshold), with the constants of face_model.h.
//
// Plain C99, no TFLM or ESP-IDF dependency: AtalaIA's tests compile it with the host C compiler and compare
// its decisions with the Python ones. What it does NOT do: capture, face detection and alignment (the model
// expects the chip described in face_model.h) and persistence (store the gallery in NVS/flash yourself: the
// templates are only valid for the model they were enrolled with).
#ifndef ATALAIA_FACE_H_
#define ATALAIA_FACE_H_

#include <stdint.h>

#include "face_model.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef ATALAIA_FACE_MAX_TEMPLATES
#define ATALAIA_FACE_MAX_TEMPLATES 64  // 64 x 128 floats = 32 KB of RAM
#endif

typedef struct {
  float templates[ATALAIA_FACE_MAX_TEMPLATES][ATALAIA_FACE_EMBEDDING_DIM];  // unit vectors
  int16_t person[ATALAIA_FACE_MAX_TEMPLATES];                              // owner id of each template
  int count;
} atalaia_gallery_t;

typedef struct {
  int granted;   // 1: open the door
  int person;    // best-matching enrolled person (-1: empty gallery)
  float score;   // cosine similarity to that person's closest template
  float threshold;
} atalaia_decision_t;

// The model's raw int8 output(s) -> unit embedding (dequantize, normalise). With ATALAIA_FACE_MIRROR_TTA the
// output for the mirrored chip must be given too: the embedding is normalise(unit(e) + unit(e_mirror)).
// Returns 0, or -1 when a mirror output is required but missing.
int atalaia_face_embedding(const int8_t* output_q, const int8_t* mirror_output_q, float* embedding);

// Mirror a grey chip left-right (the second input when ATALAIA_FACE_MIRROR_TTA is 1).
void atalaia_face_mirror_input(const int8_t* input_q, int8_t* mirrored_q);

void atalaia_gallery_init(atalaia_gallery_t* g);
// Adds one template; returns its index, or -1 when the gallery is full.
int atalaia_gallery_enrol(atalaia_gallery_t* g, int16_t person, const float* embedding);
// Removes every template of `person`; returns how many were removed.
int atalaia_gallery_remove(atalaia_gallery_t* g, int16_t person);

// Cosine threshold that lets about `open_far` of strangers' attempts in against `templates` templates
// (`atalaia access`'s default rule with open_far = 0.01): pairwise FAR p = 1 - (1 - open_far)^(1/templates),
// threshold interpolated in log10(p) over the LFW impostor tail of face_model.h (clamped at its ends).
float atalaia_face_open_set_threshold(int templates, float open_far);

// 1-NN over every template: granted when the best cosine >= threshold. Pass threshold < -1 to use
// atalaia_face_open_set_threshold(g->count, 0.01f).
atalaia_decision_t atalaia_face_decide(const atalaia_gallery_t* g, const float* embedding, float threshold);

#ifdef __cplusplus
}
#endif

#endif  // ATALAIA_FACE_H_
