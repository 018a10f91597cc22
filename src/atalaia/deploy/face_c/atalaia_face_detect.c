// See atalaia_face_detect.h. Keep every formula in the order of the Python reference.
#include "atalaia_face_detect.h"

#include <math.h>

static double iou(const double* a, const double* b) {
  double x1 = a[0] > b[0] ? a[0] : b[0];
  double y1 = a[1] > b[1] ? a[1] : b[1];
  double x2 = a[2] < b[2] ? a[2] : b[2];
  double y2 = a[3] < b[3] ? a[3] : b[3];
  double iw = x2 - x1 > 0.0 ? x2 - x1 : 0.0;
  double ih = y2 - y1 > 0.0 ? y2 - y1 : 0.0;
  double inter = iw * ih;
  double aa = (a[2] - a[0]) * (a[3] - a[1]);
  double bb = (b[2] - b[0]) * (b[3] - b[1]);
  double u = aa + bb - inter;
  return inter / (u > 1e-12 ? u : 1e-12);
}

int atalaia_face_detect_decode(const int8_t* output_q, const atalaia_det_params_t* p, atalaia_detection_t* out) {
  int cand[ATALAIA_DET_MAX_CANDIDATES];
  int n = 0, kept = 0;
  const int cells = p->grid_h * p->grid_w;
  const double t = log(p->score_threshold / (1.0 - p->score_threshold));
  for (int c = 0; c < cells && n < ATALAIA_DET_MAX_CANDIDATES; ++c) {
    double logit = (double)(output_q[c * ATALAIA_DET_CHANNELS] - p->out_zero_point) * p->out_scale;
    if (logit > t) cand[n++] = c;
  }
  // insertion sort: larger raw logit first (same order as the dequantized one), lower cell index on ties
  for (int a = 1; a < n; ++a) {
    int c = cand[a], b = a - 1;
    int8_t q = output_q[c * ATALAIA_DET_CHANNELS];
    while (b >= 0 && output_q[cand[b] * ATALAIA_DET_CHANNELS] < q) {
      cand[b + 1] = cand[b];
      --b;
    }
    cand[b + 1] = c;
  }
  for (int k = 0; k < n && kept < p->max_detections; ++k) {
    const int c = cand[k];
    double v[ATALAIA_DET_CHANNELS];
    for (int ch = 0; ch < ATALAIA_DET_CHANNELS; ++ch)
      v[ch] = (double)(output_q[c * ATALAIA_DET_CHANNELS + ch] - p->out_zero_point) * p->out_scale;
    const int i = c / p->grid_w, j = c % p->grid_w;
    const double cx = ((double)j + 0.5 + v[1] / p->offset_gain) * p->stride;
    const double cy = ((double)i + 0.5 + v[2] / p->offset_gain) * p->stride;
    const double bw = p->size_unit * exp(v[3] / p->size_gain);
    const double bh = p->size_unit * exp(v[4] / p->size_gain);
    double box[4] = {cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2};
    int suppressed = 0;
    for (int m = 0; m < kept && !suppressed; ++m) suppressed = iou(box, out[m].box) > p->nms_iou;
    if (suppressed) continue;
    atalaia_detection_t* d = &out[kept++];
    for (int e = 0; e < 4; ++e) d->box[e] = box[e];
    d->score = 1.0 / (1.0 + exp(-v[0]));
    for (int pt = 0; pt < ATALAIA_DET_POINTS; ++pt) {
      d->points[pt][0] = cx + (v[5 + 2 * pt] / p->landmark_gain) * bw;
      d->points[pt][1] = cy + (v[6 + 2 * pt] / p->landmark_gain) * bw;
    }
  }
  return kept;
}

void atalaia_detection_to_frame(atalaia_detection_t* d, double scale, double pad_x, double pad_y) {
  for (int e = 0; e < 4; ++e) d->box[e] = (d->box[e] - ((e & 1) ? pad_y : pad_x)) / scale;
  for (int pt = 0; pt < ATALAIA_DET_POINTS; ++pt) {
    d->points[pt][0] = (d->points[pt][0] - pad_x) / scale;
    d->points[pt][1] = (d->points[pt][1] - pad_y) / scale;
  }
}

static double clamped_(const uint8_t* f, int w, int h, long y, long x) {
  x = x < 0 ? 0 : (x > w - 1 ? w - 1 : x);
  y = y < 0 ? 0 : (y > h - 1 ? h - 1 : y);
  return (double)f[y * w + x];
}

atalaia_letterbox_t atalaia_letterbox(const uint8_t* frame, int w, int h, int in_w, int in_h, float in_scale,
                                      int in_zero_point, int8_t* input_q) {
  atalaia_letterbox_t lb;
  const double sx = (double)in_w / w, sy = (double)in_h / h;
  lb.scale = sx < sy ? sx : sy;
  lb.pad_x = (in_w - w * lb.scale) / 2.0;
  lb.pad_y = (in_h - h * lb.scale) / 2.0;
  for (int v = 0; v < in_h; ++v)
    for (int u = 0; u < in_w; ++u) {
      const double xc = ((double)u + 0.5 - lb.pad_x) / lb.scale, yc = ((double)v + 0.5 - lb.pad_y) / lb.scale;
      double g = 0.0;
      if (xc >= 0 && xc < w && yc >= 0 && yc < h) {
        const double xs = xc - 0.5, ys = yc - 0.5;
        const long ix = (long)floor(xs), iy = (long)floor(ys);
        const double fx = xs - ix, fy = ys - iy;
        const double top = clamped_(frame, w, h, iy, ix) * (1 - fx) + clamped_(frame, w, h, iy, ix + 1) * fx;
        const double bot = clamped_(frame, w, h, iy + 1, ix) * (1 - fx) + clamped_(frame, w, h, iy + 1, ix + 1) * fx;
        g = floor(top * (1 - fy) + bot * fy + 0.5);
        g = g < 0 ? 0 : (g > 255 ? 255 : g);
      }
      const float x = (float)g / 255.0f;
      long q = lrintf(x / in_scale) + in_zero_point;  // lrintf: round half to even, as np.round
      input_q[v * in_w + u] = (int8_t)(q < -128 ? -128 : (q > 127 ? 127 : q));
    }
  return lb;
}

int atalaia_pick_face(const atalaia_detection_t* d, int n) {
  int best = -1;
  double best_area = -1.0;
  for (int k = 0; k < n; ++k) {
    const double a = (d[k].box[2] - d[k].box[0]) * (d[k].box[3] - d[k].box[1]);
    if (a > best_area || (a == best_area && d[k].score > d[best].score)) {
      best = k;
      best_area = a;
    }
  }
  return best;
}

// dlib's 5-point template on the unit square (get_face_chip_details), as data.align.DLIB_TEMPLATE_5
static const double kTemplate[ATALAIA_DET_POINTS][2] = {
    {0.8595674595992, 0.2134981538014}, {0.6460604764104, 0.2289674387677}, {0.1205750620789, 0.2137274526848},
    {0.3340850613712, 0.2290642403242}, {0.4901123135679, 0.6277975316475}};

static double pixel(const uint8_t* f, int w, int h, long y, long x) {
  return (x >= 0 && x < w && y >= 0 && y < h) ? (double)f[y * w + x] : 0.0;
}

void atalaia_align_chip(const uint8_t* frame, int w, int h, const double points[ATALAIA_DET_POINTS][2],
                        int out_size, double crop, uint8_t* chip) {
  const double chip150 = 150.0, chip112 = 112.0, pad = 0.25;
  double src[ATALAIA_DET_POINTS][2], ms[2] = {0, 0}, md[2] = {0, 0};
  for (int k = 0; k < ATALAIA_DET_POINTS; ++k)
    for (int e = 0; e < 2; ++e) {
      src[k][e] = (pad + kTemplate[k][e]) / (2.0 * pad + 1.0) * chip150;
      ms[e] += src[k][e];
      md[e] += points[k][e];
    }
  for (int e = 0; e < 2; ++e) {
    ms[e] /= ATALAIA_DET_POINTS;
    md[e] /= ATALAIA_DET_POINTS;
  }
  double den = 0, num_a = 0, num_b = 0;
  for (int k = 0; k < ATALAIA_DET_POINTS; ++k) {
    double sx = src[k][0] - ms[0], sy = src[k][1] - ms[1];
    double dx = points[k][0] - md[0], dy = points[k][1] - md[1];
    den += sx * sx + sy * sy;
    num_a += sx * dx + sy * dy;
    num_b += sx * dy - sy * dx;
  }
  const double a = num_a / den, b = num_b / den;
  const double tx = md[0] - (a * ms[0] - b * ms[1]);
  const double ty = md[1] - (b * ms[0] + a * ms[1]);
  const int c = (int)lround(chip112 * crop);
  const int x0 = ((int)chip112 - c) / 2;
  const double kk = (double)c / out_size * chip150 / chip112;
  const double off = ((double)x0 + 0.5 * c / out_size) * chip150 / chip112 - 0.5;
  // (m @ pre) with pre = [[kk, 0, off], [0, kk, off], [0, 0, 1]]
  const double m00 = a * kk, m01 = -b * kk, m02 = a * off + -b * off + tx;
  const double m10 = b * kk, m11 = a * kk, m12 = b * off + a * off + ty;
  for (int v = 0; v < out_size; ++v)
    for (int u = 0; u < out_size; ++u) {
      const double xs = m00 * u + m01 * v + m02;
      const double ys = m10 * u + m11 * v + m12;
      const long ix = (long)floor(xs), iy = (long)floor(ys);
      const double fx = xs - ix, fy = ys - iy;
      const double top = pixel(frame, w, h, iy, ix) * (1 - fx) + pixel(frame, w, h, iy, ix + 1) * fx;
      const double bot = pixel(frame, w, h, iy + 1, ix) * (1 - fx) + pixel(frame, w, h, iy + 1, ix + 1) * fx;
      double g = floor(top * (1 - fy) + bot * fy + 0.5);
      chip[v * out_size + u] = (uint8_t)(g < 0 ? 0 : (g > 255 ? 255 : g));
    }
}
