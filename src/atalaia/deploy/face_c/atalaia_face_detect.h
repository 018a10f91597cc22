// AtalaIA on-device face detection post-processing and alignment, the C twin of
// `atalaia.evaluate.detection.decode` and `atalaia.face.align5.align_chip`.
//
// Detector output: one int8 tensor (grid_h, grid_w, 15) from the `face_det` model: per cell the heat-map logit,
// centre offset (2), log box size (2) and the 5 landmarks relative to the box centre / box width (10), each
// multiplied by a gain (see models/detector.py). Decode = candidates above the score threshold, ordered by
// logit (ties: lower cell index first), decoded, greedy NMS, at most max_detections kept. All arithmetic in
// double precision, in the same order as the Python reference: AtalaIA's tests compile this file with the host
// C compiler and require the same boxes (within 1e-6 px) and, for alignment, the same chip within 1 grey level.
//
// Plain C99, no allocation, no TFLM dependency.
#ifndef ATALAIA_FACE_DETECT_H_
#define ATALAIA_FACE_DETECT_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ATALAIA_DET_CHANNELS 15
#define ATALAIA_DET_POINTS 5
#ifndef ATALAIA_DET_MAX_CANDIDATES
#define ATALAIA_DET_MAX_CANDIDATES 512  // cells above threshold considered (grid 15x20 = 300)
#endif

typedef struct {
  int grid_h, grid_w;       // output grid (input / stride)
  double stride;            // 8
  double out_scale;         // output quantization
  int out_zero_point;
  double offset_gain, size_gain, landmark_gain, size_unit;  // models/detector.py constants
  double score_threshold;   // e.g. 0.5
  double nms_iou;           // e.g. 0.4
  int max_detections;
} atalaia_det_params_t;

typedef struct {
  double box[4];            // x1 y1 x2 y2, input pixels
  double score;             // sigmoid of the heat-map logit
  double points[ATALAIA_DET_POINTS][2];  // dlib order: right-side eye outer, inner, left-side outer, inner, nose
} atalaia_detection_t;

// Decode + NMS; writes at most p->max_detections detections, returns how many.
int atalaia_face_detect_decode(const int8_t* output_q, const atalaia_det_params_t* p, atalaia_detection_t* out);

// The recogniser's grey chip (out_size x out_size) from a grey frame (w x h, row-major) and 5 dlib-order points
// in frame pixels: dlib get_face_chip(size=150, padding=0.25) framing, resized to 112, centre crop `crop`,
// resized to out_size, as ONE similarity warp with bilinear sampling (pixels outside the frame are 0).
void atalaia_align_chip(const uint8_t* frame, int w, int h, const double points[ATALAIA_DET_POINTS][2],
                        int out_size, double crop, uint8_t* chip);

// How a frame maps into the detector input: input = frame * scale + (pad_x, pad_y) (continuous coordinates).
typedef struct {
  double scale, pad_x, pad_y;
} atalaia_letterbox_t;

// The detector's int8 input (in_w x in_h) from a grey frame (w x h, any size), as
// `atalaia.face.frame.letterbox_frame` + the input quantization: aspect kept, centred, black bars; bilinear at
// output pixel centres (frame neighbours clamped, outside the frame 0), rounded to a grey level g, then
// q = round_half_even((g / 255) / in_scale) + in_zero_point in float32 (TFLiteRunner.quantize_input).
atalaia_letterbox_t atalaia_letterbox(const uint8_t* frame, int w, int h, int in_w, int in_h, float in_scale,
                                      int in_zero_point, int8_t* input_q);

// The face to use among n detections: the largest box (area), ties -> the higher score (-1 when n == 0),
// as `atalaia.face.frame.pick_face`.
int atalaia_pick_face(const atalaia_detection_t* d, int n);

// Letterbox inverse: input pixels -> frame pixels (frame = (input - pad) / scale), boxes and points in place.
void atalaia_detection_to_frame(atalaia_detection_t* d, double scale, double pad_x, double pad_y);

#ifdef __cplusplus
}
#endif

#endif  // ATALAIA_FACE_DETECT_H_
