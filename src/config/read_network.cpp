// network: the generator's architecture (only the U-Net so far).
#include "config/section_readers.hpp"

namespace pdegen::config {

NetworkConfig read_network(Section& s) {
  NetworkConfig c;
  c.type = s.choice<NetworkKind>("type", c.type);
  c.depth = s.integer_as<int>("depth", c.depth, at_least(1));
  c.base_channels = s.integer_as<int>("base_channels", c.base_channels, at_least(1));
  c.channel_multiplier = s.integer_as<int>("channel_multiplier", c.channel_multiplier, at_least(1));
  c.convs_per_level = s.integer_as<int>("convs_per_level", c.convs_per_level, at_least(1));
  c.kernel_size = s.integer_as<int>("kernel_size", c.kernel_size, at_least(1));
  if (c.kernel_size % 2 == 0)
    s.fail("kernel_size",
           fmt::format("'network.kernel_size' must be odd (padding k/2 keeps the grid size), got {}",
                       c.kernel_size));
  c.norm = s.choice<NormKind>("norm", c.norm);
  c.activation = s.choice<ActivationKind>("activation", c.activation);
  c.downsample = s.choice<DownsampleKind>("downsample", c.downsample);
  c.upsample = s.choice<UpsampleKind>("upsample", c.upsample);
  return c;
}

}  // namespace pdegen::config
