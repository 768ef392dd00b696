// Rotary position embedding with interleaved pairs. Row t, head h of x starts
// at x_off + t * x_ld + h * E; pair (2j, 2j+1) rotates by the angle whose
// cos/sin the host stored at cs[(t * E/2 + j) * 2 + {0, 1}] (computed in
// double on the host so that positions past 1e6 stay exact). The backward
// rotates by the opposite angle. out may alias x.

inline void rope_apply(__global float* out, int out_off, int out_ld, __global const float* x, int x_off, int x_ld,
                       __global const float* cs, int T, int H, int E, float sign) {
  const int j = get_global_id(0), h = get_global_id(1), t = get_global_id(2);
  if (j >= E / 2 || h >= H || t >= T) return;
  const float c = cs[((long)t * (E / 2) + j) * 2], s = sign * cs[((long)t * (E / 2) + j) * 2 + 1];
  __global const float* xp = x + x_off + (long)t * x_ld + h * E + 2 * j;
  __global float* op = out + out_off + (long)t * out_ld + h * E + 2 * j;
  const float a = xp[0], b = xp[1];
  op[0] = a * c - b * s;
  op[1] = a * s + b * c;
}

__kernel void rope_fwd(__global float* out, int out_off, int out_ld, __global const float* x, int x_off, int x_ld,
                       __global const float* cs, int T, int H, int E) {
  rope_apply(out, out_off, out_ld, x, x_off, x_ld, cs, T, H, E, 1.0f);
}

__kernel void rope_bwd(__global float* dx, int dx_off, int dx_ld, __global const float* dy, int dy_off, int dy_ld,
                       __global const float* cs, int T, int H, int E) {
  rope_apply(dx, dx_off, dx_ld, dy, dy_off, dy_ld, cs, T, H, E, -1.0f);
}
