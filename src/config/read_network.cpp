// network: the generator's architecture (only the U-Net so far).
#include "config/section_readers.hpp"

namespace pdegen::config {

NetworkConfig read_network(Section& s, NetworkConfig c) {
  c.type = s.choice<NetworkKind>("type", c.type, "the architecture");
  c.depth = s.integer_as<int>("depth", c.depth, at_least(1),
                              "resolution levels including the bottleneck (depth - 1 down-samplings)");
  c.base_channels =
      s.integer_as<int>("base_channels", c.base_channels, at_least(1), "channels c_0 of the first level");
  c.channel_multiplier = s.integer_as<int>("channel_multiplier", c.channel_multiplier, at_least(1),
                                           "level i has c_i = base_channels * channel_multiplier^i channels");
  c.convs_per_level = s.integer_as<int>("convs_per_level", c.convs_per_level, at_least(1),
                                        "[conv -> norm -> activation] blocks per level, encoder and decoder");
  c.kernel_size =
      s.integer_as<int>("kernel_size", c.kernel_size, at_least(1),
                        Doc("convolution kernel k (padding k/2 keeps the grid size)").allowed("odd"));
  if (c.kernel_size % 2 == 0)
    s.fail("kernel_size",
           fmt::format("'network.kernel_size' must be odd (padding k/2 keeps the grid size), got {}",
                       c.kernel_size));
  c.norm = s.choice<NormKind>("norm", c.norm, "normalization after each conv");
  c.activation =
      s.choice<ActivationKind>("activation", c.activation, "activation after each conv (and norm)");
  c.downsample = s.choice<DownsampleKind>(
      "downsample", c.downsample,
      "between levels: 2x2 max-pool, 2x2 average pool, or 2x2 stride-2 conv c_i -> c_i");
  c.upsample = s.choice<UpsampleKind>(
      "upsample", c.upsample,
      "decoder: 2x2 stride-2 transposed conv c_{i+1} -> c_i, or nearest 2x resize + 3x3 conv");
  return c;
}

}  // namespace pdegen::config
