// The closed sets of words a deck may use for its choice keys (pde, type, norm, ...): one enum per
// key and one table that spells its members, so the reader, the error messages, the resolved deck
// and the documentation all use the same words.
#pragma once

#include <array>
#include <string>
#include <string_view>

#include "core/activation_kind.hpp"
#include "core/dtype.hpp"
#include "core/tensor.hpp"

namespace pdegen {

enum class PdeKind { poisson2d, poisson3d, burgers1d };
enum class ProblemMap { forward, inverse };
enum class LossKind { energy, residual, least_squares };
enum class IcSampling { random, fixed_uniform };
enum class BoundaryTreatment { exact, penalty };
enum class NetworkKind { unet, fc_densenet };
enum class DenseNetPreset { fc56, fc67, fc103, custom };
enum class NormKind { none, batch, instance };
enum class DownsampleKind { maxpool, avgpool, strided_conv };
enum class UpsampleKind { transposed_conv, resize_conv };
enum class OptimizerKind { adam, adamw, sgd, lbfgs, lars, lamb };
enum class LineSearch { strong_wolfe, backtracking };
enum class LbfgsBatch { fixed, fresh };
enum class ScheduleKind { constant, step, cosine };
enum class Hierarchical { automatic, on, off };
enum class Compression { none, fp16, bf16 };
enum class ConvMathKind { fp32, tf32, fp16_conversion };
enum class ConvAlgorithmKind { direct, automatic };
enum class SyncBatchNorm { automatic, on, off };
enum class ExistingRun { refuse, move_aside };
enum class CycleKind { half_v, v, w, f };
enum class OptimizerCarry { reset, carry };
enum class ObjectiveKind { physics, data, hybrid };
enum class DataLossKind { mse, l1, huber, rel_l2 };

template <class E>
struct Named {
  E value;
  std::string_view name;
};

// ChoiceNames<E>::table lists the deck spellings of E, in the order the documentation gives them.
template <class E>
struct ChoiceNames;

#define PDEGEN_CHOICES(E, N, ...)                                  \
  template <>                                                      \
  struct ChoiceNames<E> {                                          \
    static constexpr std::array<Named<E>, N> table{{__VA_ARGS__}}; \
  }

PDEGEN_CHOICES(PdeKind, 3, {PdeKind::poisson2d, "poisson2d"}, {PdeKind::poisson3d, "poisson3d"},
               {PdeKind::burgers1d, "burgers1d"});
PDEGEN_CHOICES(ProblemMap, 2, {ProblemMap::forward, "forward"}, {ProblemMap::inverse, "inverse"});
PDEGEN_CHOICES(LossKind, 3, {LossKind::energy, "energy"}, {LossKind::residual, "residual"},
               {LossKind::least_squares, "least_squares"});
PDEGEN_CHOICES(IcSampling, 2, {IcSampling::random, "random"}, {IcSampling::fixed_uniform, "fixed_uniform"});
PDEGEN_CHOICES(BoundaryTreatment, 2, {BoundaryTreatment::exact, "exact"},
               {BoundaryTreatment::penalty, "penalty"});
PDEGEN_CHOICES(NetworkKind, 2, {NetworkKind::unet, "unet"}, {NetworkKind::fc_densenet, "fc_densenet"});
PDEGEN_CHOICES(DenseNetPreset, 4, {DenseNetPreset::fc56, "fc56"}, {DenseNetPreset::fc67, "fc67"},
               {DenseNetPreset::fc103, "fc103"}, {DenseNetPreset::custom, "custom"});
PDEGEN_CHOICES(NormKind, 3, {NormKind::none, "none"}, {NormKind::batch, "batch"},
               {NormKind::instance, "instance"});
// identity is a layer the builder may use, not a choice a deck offers.
PDEGEN_CHOICES(ActivationKind, 5, {ActivationKind::relu, "relu"}, {ActivationKind::leaky_relu, "leaky_relu"},
               {ActivationKind::tanh, "tanh"}, {ActivationKind::silu, "silu"},
               {ActivationKind::sigmoid, "sigmoid"});
PDEGEN_CHOICES(DownsampleKind, 3, {DownsampleKind::maxpool, "maxpool"}, {DownsampleKind::avgpool, "avgpool"},
               {DownsampleKind::strided_conv, "strided_conv"});
PDEGEN_CHOICES(UpsampleKind, 2, {UpsampleKind::transposed_conv, "transposed_conv"},
               {UpsampleKind::resize_conv, "resize_conv"});
PDEGEN_CHOICES(OptimizerKind, 6, {OptimizerKind::adam, "adam"}, {OptimizerKind::adamw, "adamw"},
               {OptimizerKind::sgd, "sgd"}, {OptimizerKind::lbfgs, "lbfgs"}, {OptimizerKind::lars, "lars"},
               {OptimizerKind::lamb, "lamb"});
PDEGEN_CHOICES(LineSearch, 2, {LineSearch::strong_wolfe, "strong_wolfe"},
               {LineSearch::backtracking, "backtracking"});
PDEGEN_CHOICES(LbfgsBatch, 2, {LbfgsBatch::fixed, "fixed"}, {LbfgsBatch::fresh, "fresh"});
PDEGEN_CHOICES(ScheduleKind, 3, {ScheduleKind::constant, "constant"}, {ScheduleKind::step, "step"},
               {ScheduleKind::cosine, "cosine"});
PDEGEN_CHOICES(Hierarchical, 3, {Hierarchical::automatic, "auto"}, {Hierarchical::on, "on"},
               {Hierarchical::off, "off"});
PDEGEN_CHOICES(ConvMathKind, 3, {ConvMathKind::fp32, "fp32"}, {ConvMathKind::tf32, "tf32"},
               {ConvMathKind::fp16_conversion, "fp16_conversion"});
PDEGEN_CHOICES(ConvAlgorithmKind, 2, {ConvAlgorithmKind::direct, "direct"},
               {ConvAlgorithmKind::automatic, "auto"});
PDEGEN_CHOICES(Compression, 3, {Compression::none, "none"}, {Compression::fp16, "fp16"},
               {Compression::bf16, "bf16"});
PDEGEN_CHOICES(SyncBatchNorm, 3, {SyncBatchNorm::automatic, "auto"}, {SyncBatchNorm::on, "true"},
               {SyncBatchNorm::off, "false"});
PDEGEN_CHOICES(CycleKind, 4, {CycleKind::half_v, "half_v"}, {CycleKind::v, "v"}, {CycleKind::w, "w"},
               {CycleKind::f, "f"});
PDEGEN_CHOICES(OptimizerCarry, 2, {OptimizerCarry::reset, "reset"}, {OptimizerCarry::carry, "carry"});
PDEGEN_CHOICES(ObjectiveKind, 3, {ObjectiveKind::physics, "physics"}, {ObjectiveKind::data, "data"},
               {ObjectiveKind::hybrid, "hybrid"});
PDEGEN_CHOICES(DataLossKind, 4, {DataLossKind::mse, "mse"}, {DataLossKind::l1, "l1"},
               {DataLossKind::huber, "huber"}, {DataLossKind::rel_l2, "rel_l2"});
PDEGEN_CHOICES(ExistingRun, 2, {ExistingRun::refuse, "refuse"}, {ExistingRun::move_aside, "move_aside"});
PDEGEN_CHOICES(Device, 2, {Device::cpu, "cpu"}, {Device::cuda, "cuda"});
PDEGEN_CHOICES(DType, 3, {DType::f32, "fp32"}, {DType::f16, "fp16"}, {DType::bf16, "bf16"});

#undef PDEGEN_CHOICES

// The deck spelling of a choice ("?" for a value no deck can name, e.g. ActivationKind::identity).
template <class E>
constexpr std::string_view name_of(E value) {
  for (const auto& entry : ChoiceNames<E>::table)
    if (entry.value == value) return entry.name;
  return "?";
}

// "a, b, c": the allowed words, for error messages.
template <class E>
std::string choice_list() {
  std::string out;
  for (const auto& entry : ChoiceNames<E>::table) {
    if (!out.empty()) out += ", ";
    out += entry.name;
  }
  return out;
}

}  // namespace pdegen
