// network: the generator's architecture, a U-Net or an FC-DenseNet.
#include "config/section_readers.hpp"

namespace pdegen::config {

namespace {

// The growth rate and block layers of a preset (Jegou et al. 2017, "The One Hundred Layers Tiramisu").
void apply_preset(NetworkConfig& c) {
  switch (c.preset) {
    case DenseNetPreset::fc56:
      c.growth_rate = 12, c.block_layers = {4, 4, 4, 4, 4, 4};
      return;
    case DenseNetPreset::fc67:
      c.growth_rate = 16, c.block_layers = {5, 5, 5, 5, 5, 5};
      return;
    case DenseNetPreset::fc103:
      c.growth_rate = 16, c.block_layers = {4, 5, 7, 10, 12, 15};
      return;
    case DenseNetPreset::custom:
      return;
  }
}

void read_unet(Section& s, NetworkConfig& c) {
  c.depth = s.integer_as<int>("depth", c.depth, at_least(1),
                              "resolution levels including the bottleneck (depth - 1 down-samplings)");
  c.base_channels =
      s.integer_as<int>("base_channels", c.base_channels, at_least(1), "channels c_0 of the first level");
  c.channel_multiplier = s.integer_as<int>("channel_multiplier", c.channel_multiplier, at_least(1),
                                           "level i has c_i = base_channels * channel_multiplier^i channels");
  c.convs_per_level = s.integer_as<int>("convs_per_level", c.convs_per_level, at_least(1),
                                        "[conv -> norm -> activation] blocks per level, encoder and decoder");
}

void read_densenet(Section& s, NetworkConfig& c, bool active) {
  c.first_channels = s.integer_as<int>("first_channels", c.first_channels, at_least(1),
                                       "channels of the first convolution, before the first dense block");
  c.preset = s.choice<DenseNetPreset>("preset", c.preset,
                                      "FC-DenseNet56 (growth 12, 4 layers per block), 67 (16, 5), 103 (16; "
                                      "4, 5, 7, 10, 12 and a bottleneck of "
                                      "15), or `custom`: `growth_rate` and `block_layers` as given");
  if (active && !s.describing()) apply_preset(c);
  Section::Gate gate(s, c.preset == DenseNetPreset::custom, "network preset custom",
                     fmt::format("{} is '{}'", s.key_path("preset"), name_of(c.preset)));
  c.growth_rate = s.integer_as<int>("growth_rate", c.growth_rate, at_least(1),
                                    "channels each layer of a dense block adds");
  c.block_layers =
      s.integers("block_layers", c.block_layers, Range{1, 1024},
                 "layers of each dense block: the down path's blocks, then the bottleneck's (the up "
                 "path mirrors the down path); n entries make n - 1 down-samplings");
}

}  // namespace

NetworkConfig read_network(Section& s, NetworkConfig c) {
  const auto type = s.try_choice<NetworkKind>("type", c.type, "the architecture");
  if (type) c.type = *type;
  const std::string actual = fmt::format("{} is '{}'", s.key_path("type"), name_of(c.type));
  {
    Section::Gate gate(s, !type || c.type == NetworkKind::unet, "network type unet", actual);
    read_unet(s, c);
  }
  {
    const bool densenet = type && c.type == NetworkKind::fc_densenet;
    Section::Gate gate(s, !type || densenet, "network type fc_densenet", actual);
    read_densenet(s, c, densenet);
  }
  c.kernel_size =
      s.integer_as<int>("kernel_size", c.kernel_size, at_least(1),
                        Doc("convolution kernel k (padding k/2 keeps the grid size)").allowed("odd"));
  if (c.kernel_size % 2 == 0)
    s.fail("kernel_size",
           fmt::format("'network.kernel_size' must be odd (padding k/2 keeps the grid size), got {}",
                       c.kernel_size));
  c.norm = s.choice<NormKind>("norm", c.norm,
                              "normalization after each conv (U-Net), before each conv (FC-DenseNet's "
                              "pre-activation layers); FC-DenseNet is built for `batch`");
  c.activation = s.choice<ActivationKind>("activation", c.activation, "activation after each norm");
  c.downsample = s.choice<DownsampleKind>(
      "downsample", c.downsample,
      "between levels: 2x2 max-pool, 2x2 average pool, or 2x2 stride-2 conv (FC-DenseNet: the pool after its "
      "transition's 1x1 conv, or a 2x2 stride-2 conv in place of both)");
  c.upsample =
      s.choice<UpsampleKind>("upsample", c.upsample,
                             "up the decoder: 2x2 stride-2 transposed conv, or nearest 2x resize + 3x3 conv");
  return c;
}

}  // namespace pdegen::config
