// Where an element of a channel-blocked tensor lives (nC[D]HW{b}c; b = 1 is the plain layout), for
// host and device code alike: element (n, c, s) of a tensor with C channels, S spatial positions
// and channel block b is at ((n * C/b + c/b) * S + s) * b + c % b. Tensor::offset and every kernel
// that walks blocked storage use these two functions.
#pragma once

#include "core/hd.hpp"

namespace pdegen {

template <class Index>
PDEGEN_HD Index blocked_offset(Index n, Index c, Index s, Index C, Index S, Index b) {
  return ((n * (C / b) + c / b) * S + s) * b + c % b;
}

// The logical (n, c, s) of storage index i: the inverse of blocked_offset.
template <class Index>
PDEGEN_HD void blocked_position(Index i, Index C, Index S, Index b, Index& n, Index& c, Index& s) {
  const Index lane = i % b, q = i / b, r = q / S;
  s = q % S;
  c = r % (C / b) * b + lane;
  n = r / (C / b);
}

}  // namespace pdegen
