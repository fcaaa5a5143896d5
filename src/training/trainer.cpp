#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/core/file.h>
#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/core/version.h>
#include <manifold_diffusion/training/checkpoint.h>
#include <manifold_diffusion/training/trainer.h>

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>
#include <torch/version.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <charconv>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <sstream>
#include <type_traits>
#include <utility>

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define MD_HAS_DEVICE_AUTOCAST 1
#else
#define MD_HAS_DEVICE_AUTOCAST 0
#endif

namespace manifold_diffusion {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// LRSchedule

void LRScheduleOptions::validate() const {
  MD_CHECK_VALUE(total_steps() >= 1, "LRScheduleOptions: total_steps must be >= 1, got ", total_steps());
  MD_CHECK_VALUE(warmup_steps() >= 0, "LRScheduleOptions: warmup_steps must be >= 0, got ", warmup_steps());
  MD_CHECK_VALUE(min_factor() >= 0.0 && min_factor() <= 1.0,
                 "LRScheduleOptions: min_factor must be in [0, 1], got ", min_factor());
}

LRSchedule::LRSchedule(LRScheduleOptions options) : options_(std::move(options)) { options_.validate(); }

double LRSchedule::factor(int64_t step) const {
  MD_CHECK_VALUE(step >= 0, "LRSchedule::factor: step must be >= 0, got ", step);
  const int64_t warm = options_.warmup_steps();
  if (step < warm) return static_cast<double>(step + 1) / static_cast<double>(warm);
  const double lo = options_.min_factor();
  const int64_t span = options_.total_steps() - warm;
  if (span <= 0 || options_.decay() == LRDecay::Constant) return 1.0;
  const double progress = std::min(1.0, static_cast<double>(step - warm) / static_cast<double>(span));
  if (options_.decay() == LRDecay::Linear) return 1.0 - (1.0 - lo) * progress;
  return lo + (1.0 - lo) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

// ---------------------------------------------------------------------------------------------
// Options and data

void TrainerOptions::validate() const {
  const char* w = "TrainerOptions";
  MD_CHECK_VALUE(steps() >= 1, w, ": steps must be >= 1, got ", steps());
  MD_CHECK_VALUE(std::isfinite(lr()) && lr() > 0, w, ": lr must be positive, got ", lr());
  MD_CHECK_VALUE(weight_decay() >= 0, w, ": weight_decay must be >= 0, got ", weight_decay());
  MD_CHECK_VALUE(beta1() >= 0 && beta1() < 1, w, ": beta1 must be in [0, 1), got ", beta1());
  MD_CHECK_VALUE(beta2() >= 0 && beta2() < 1, w, ": beta2 must be in [0, 1), got ", beta2());
  MD_CHECK_VALUE(adam_eps() > 0, w, ": adam_eps must be positive, got ", adam_eps());
  MD_CHECK_VALUE(warmup_steps() >= 0, w, ": warmup_steps must be >= 0, got ", warmup_steps());
  MD_CHECK_VALUE(min_lr_factor() >= 0 && min_lr_factor() <= 1, w, ": min_lr_factor must be in [0, 1], got ",
                 min_lr_factor());
  MD_CHECK_VALUE(grad_clip() >= 0, w, ": grad_clip must be >= 0 (0: off), got ", grad_clip());
  MD_CHECK_VALUE(grad_accumulation() >= 1, w, ": grad_accumulation must be >= 1, got ", grad_accumulation());
  MD_CHECK_VALUE(ema_decay() >= 0 && ema_decay() < 1, w, ": ema_decay must be in [0, 1) (0: no EMA), got ",
                 ema_decay());
  MD_CHECK_VALUE(label_dropout() >= 0 && label_dropout() <= 1, w, ": label_dropout must be in [0, 1], got ",
                 label_dropout());
  MD_CHECK_VALUE(validation_every() >= 0, w, ": validation_every must be >= 0, got ", validation_every());
  MD_CHECK_VALUE(validation_batches() >= 1, w, ": validation_batches must be >= 1, got ", validation_batches());
  MD_CHECK_VALUE(max_nonfinite() >= 0, w, ": max_nonfinite must be >= 0, got ", max_nonfinite());
  MD_CHECK_VALUE(loss_spike_factor() == 0 || (std::isfinite(loss_spike_factor()) && loss_spike_factor() > 1), w,
                 ": loss_spike_factor must be 0 (off) or > 1, got ", loss_spike_factor());
  MD_CHECK_VALUE(grad_spike_factor() == 0 || (std::isfinite(grad_spike_factor()) && grad_spike_factor() > 1), w,
                 ": grad_spike_factor must be 0 (off) or > 1, got ", grad_spike_factor());
  MD_CHECK_VALUE(spike_warmup() >= 1, w, ": spike_warmup must be >= 1, got ", spike_warmup());
  MD_CHECK_VALUE(rollback_after() >= 0, w, ": rollback_after must be >= 0, got ", rollback_after());
  MD_CHECK_VALUE(rollback_after() == 0 || !out_dir().empty(), w, ": rollback_after = ", rollback_after(),
                 " needs an out_dir with checkpoints to roll back to");
  MD_CHECK_VALUE(log_every() >= 0, w, ": log_every must be >= 0, got ", log_every());
  MD_CHECK_VALUE(checkpoint_every() >= 0, w, ": checkpoint_every must be >= 0, got ", checkpoint_every());
  MD_CHECK_VALUE(keep_last() >= 1, w, ": keep_last must be >= 1, got ", keep_last());
  MD_CHECK_VALUE(checkpoint_every() == 0 || !out_dir().empty(), w, ": checkpoint_every = ", checkpoint_every(),
                 " needs an out_dir");
}

DataSource random_batches(at::Tensor data, at::Tensor labels, int64_t batch, uint64_t seed, Shard shard) {
  check_defined(data, "data");
  check_non_empty(data, "data");
  MD_CHECK_VALUE(batch >= 1, "random_batches: batch must be >= 1, got ", batch);
  shard.validate();
  MD_CHECK_VALUE(batch % shard.count == 0, "random_batches: the global batch ", batch,
                 " must be divisible by the shard count ", shard.count);
  if (labels.defined()) {
    MD_CHECK_VALUE(labels.dim() >= 1 && labels.size(0) == data.size(0), "random_batches: labels have ",
                   labels.dim() >= 1 ? labels.size(0) : 0, " rows but data has ", data.size(0));
  }
  struct State {
    at::Tensor data, labels;
    int64_t batch;
    at::Generator gen;
    Shard shard;
  };
  auto s = std::make_shared<State>(
      State{std::move(data), std::move(labels), batch, make_generator(mix_seed(seed)), shard});
  DataSource src;
  src.next = [s] {
    at::Tensor idx = at::randint(0, s->data.size(0), {s->batch}, s->gen, at::TensorOptions(at::kLong));
    if (s->shard.count > 1) {
      const int64_t rows = s->batch / s->shard.count;
      idx = idx.narrow(0, s->shard.index * rows, rows);
    }
    TrainBatch b;
    b.x0 = s->data.index_select(0, idx.to(s->data.device()));
    if (s->labels.defined()) b.labels = s->labels.index_select(0, idx.to(s->labels.device()));
    return b;
  };
  src.state = [s] { return generator_state(s->gen); };
  src.load_state = [s](const at::Tensor& st) { set_generator_state(s->gen, st); };
  return src;
}

DataSource loader_source(std::shared_ptr<data::TensorLoader> loader) {
  MD_CHECK_VALUE(loader != nullptr, "loader_source: loader is null");
  DataSource src;
  src.next = [loader] {
    data::Batch b = loader->next();
    TrainBatch t;
    t.x0 = std::move(b.data);
    t.labels = std::move(b.labels);
    t.augment = std::move(b.aug_labels);
    return t;
  };
  src.state = [loader] { return loader->state(); };
  src.load_state = [loader](const at::Tensor& st) { loader->load_state(st); };
  return src;
}

// ---------------------------------------------------------------------------------------------
// Mixed precision

namespace {

bool resolve_bf16(Precision p, const c10::Device& device) {
  const bool can = device.is_cuda() && MD_HAS_DEVICE_AUTOCAST;
  if (p == Precision::BF16) {
    MD_CHECK_VALUE(can, "TrainerOptions: precision bf16 needs a CUDA device and LibTorch >= 2.4 (device ", device,
                   ", LibTorch ", TORCH_VERSION, "); use fp32");
  }
  return p == Precision::BF16 || (p == Precision::Auto && can);
}

class AutocastScope {
 public:
  explicit AutocastScope(bool on) : on_(on) {
#if MD_HAS_DEVICE_AUTOCAST
    if (on_) {
      prev_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
      prev_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
      at::autocast::set_autocast_enabled(at::kCUDA, true);
      at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
      at::autocast::increment_nesting();
    }
#endif
  }
  ~AutocastScope() {
#if MD_HAS_DEVICE_AUTOCAST
    if (on_) {
      if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
      at::autocast::set_autocast_enabled(at::kCUDA, prev_enabled_);
      at::autocast::set_autocast_dtype(at::kCUDA, prev_dtype_);
    }
#endif
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  [[maybe_unused]] bool on_;
  [[maybe_unused]] bool prev_enabled_ = false;
  [[maybe_unused]] at::ScalarType prev_dtype_ = at::kFloat;
};

std::vector<at::Generator> default_generators() {
  std::vector<at::Generator> gens{at::detail::getDefaultCPUGenerator()};
  if (at::hasCUDA()) {
    for (c10::DeviceIndex i = 0; i < static_cast<c10::DeviceIndex>(at::detail::getCUDAHooks().getNumGPUs()); ++i) {
      gens.push_back(at::globalContext().defaultGenerator(c10::Device(c10::kCUDA, i)));
    }
  }
  return gens;
}

// The optimizer's per-parameter state key: LibTorch keys its state map by the parameter's
// TensorImpl, as the pointer itself (2.2 and later) or as its text (before); the map's key type
// decides, so every LibTorch version compiles.
using OptimizerStateKey =
    typename std::decay_t<decltype(std::declval<torch::optim::AdamW&>().state())>::key_type;

template <class Key>
Key state_key_as(const at::Tensor& p) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream text;  // what LibTorch's own key is: the pointer streamed
    text << p.unsafeGetTensorImpl();
    return text.str();
  } else {
    return Key(p.unsafeGetTensorImpl());
  }
}

OptimizerStateKey state_key(const at::Tensor& p) { return state_key_as<OptimizerStateKey>(p); }

std::unique_ptr<torch::optim::OptimizerParamState>* find_param_state(torch::optim::AdamW& opt, const at::Tensor& p) {
  auto it = opt.state().find(state_key(p));
  return it == opt.state().end() ? nullptr : &it->second;
}

void set_param_state(torch::optim::AdamW& opt, const at::Tensor& p, std::unique_ptr<torch::optim::AdamWParamState> s) {
  opt.state()[state_key(p)] = std::move(s);
}

// AdamW's state as named tensors: "<i>.step", "<i>.exp_avg", "<i>.exp_avg_sq" (and
// "<i>.max_exp_avg_sq" with amsgrad), i the index in `params`, for the parameters that have state.
NamedTensors optimizer_state(torch::optim::AdamW& opt, const std::vector<at::Tensor>& params) {
  NamedTensors out;
  for (size_t i = 0; i < params.size(); ++i) {
    auto* slot = find_param_state(opt, params[i]);
    if (slot == nullptr || !*slot) continue;
    const auto& st = static_cast<const torch::optim::AdamWParamState&>(**slot);
    const std::string k = std::to_string(i) + ".";
    out.emplace_back(k + "step", at::scalar_tensor(st.step(), at::kLong));
    out.emplace_back(k + "exp_avg", st.exp_avg().detach().cpu());
    out.emplace_back(k + "exp_avg_sq", st.exp_avg_sq().detach().cpu());
    if (st.max_exp_avg_sq().defined()) out.emplace_back(k + "max_exp_avg_sq", st.max_exp_avg_sq().detach().cpu());
  }
  return out;
}

// The inverse of optimizer_state(), checked completely before `opt` is touched.
void load_optimizer_state(torch::optim::AdamW& opt, const std::vector<at::Tensor>& params, const NamedTensors& state,
                          const std::string& what, bool trusted) {
  struct Slot {
    at::Tensor step, exp_avg, exp_avg_sq, max_exp_avg_sq;
  };
  std::map<size_t, Slot> slots;
  for (const auto& [name, t] : state) {
    const auto dot = name.find('.');
    size_t i = 0;
    const char* end = name.data() + (dot == std::string::npos ? 0 : dot);
    const auto r = std::from_chars(name.data(), end, i);
    MD_CHECK(dot != std::string::npos && dot > 0 && r.ec == std::errc() && r.ptr == end &&
                 name.compare(0, dot, std::to_string(i)) == 0,
             what, ": optimizer entry '", name, "' is not of the form <index>.<field>");
    MD_CHECK(i < params.size(), what, ": optimizer entry '", name, "' is for parameter ", i, " but the model has ",
             params.size(), " parameters");
    const std::string field = name.substr(dot + 1);
    Slot& s = slots[i];
    at::Tensor* dst = field == "step" ? &s.step
                      : field == "exp_avg" ? &s.exp_avg
                      : field == "exp_avg_sq" ? &s.exp_avg_sq
                      : field == "max_exp_avg_sq" ? &s.max_exp_avg_sq
                                                  : nullptr;
    MD_CHECK(dst != nullptr, what, ": optimizer entry '", name, "' has an unknown field '", field, "'");
    *dst = t;
  }
  std::vector<std::pair<size_t, std::unique_ptr<torch::optim::AdamWParamState>>> built;
  for (auto& [i, s] : slots) {
    const at::Tensor& p = params[i];
    const std::string who = what + ": optimizer state of parameter " + std::to_string(i);
    MD_CHECK(s.step.defined() && s.exp_avg.defined() && s.exp_avg_sq.defined(), who,
             " lacks one of step, exp_avg, exp_avg_sq");
    MD_CHECK(s.step.scalar_type() == at::kLong && s.step.numel() == 1, who, ": step must be one int64, got ",
             s.step.scalar_type(), " of shape ", s.step.sizes());
    const int64_t step = s.step.item<int64_t>();
    MD_CHECK(step >= 0, who, ": step must be >= 0, got ", step);
    auto moment = [&](const at::Tensor& m, const char* field) {
      MD_CHECK(at::isFloatingType(m.scalar_type()) && m.sizes() == p.sizes(), who, ": ", field, " has dtype ",
               m.scalar_type(), " and shape ", m.sizes(), ", but the parameter is ", p.scalar_type(), " of shape ",
               p.sizes());
      MD_CHECK(trusted || at::isfinite(m).all().item<bool>(), who, ": ", field, " has non-finite values");
      return m.to(p.options()).clone();
    };
    auto st = std::make_unique<torch::optim::AdamWParamState>();
    st->step(step);
    st->exp_avg(moment(s.exp_avg, "exp_avg"));
    st->exp_avg_sq(moment(s.exp_avg_sq, "exp_avg_sq"));
    MD_CHECK(trusted || !(st->exp_avg_sq() < 0).any().item<bool>(), who, ": exp_avg_sq has negative values");
    if (s.max_exp_avg_sq.defined()) st->max_exp_avg_sq(moment(s.max_exp_avg_sq, "max_exp_avg_sq"));
    built.emplace_back(i, std::move(st));
  }
  for (auto& [i, st] : built) set_param_state(opt, params[i], std::move(st));
}

// create_directories with the failure as a c10::Error naming the folder (a file in the way, no
// permission, a full disk).
void make_directories(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  MD_CHECK(!ec && fs::is_directory(dir), "Trainer: cannot create the folder '", dir, "': ",
           ec ? ec.message() : std::string("a file of that name is in the way"));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Trainer

Trainer::Trainer(TrainerOptions options, std::shared_ptr<torch::nn::Module> model, NetworkFunction network,
                 NoiseSchedule schedule, DenoiserOptions denoiser_options, DataSource train,
                 std::optional<DataSource> validation)
    : options_(std::move(options)),
      model_(std::move(model)),
      network_(std::move(network)),
      train_(std::move(train)),
      validation_(std::move(validation)),
      lr_schedule_(LRScheduleOptions(options_.steps())
                       .warmup_steps(options_.warmup_steps())
                       .decay(options_.lr_decay())
                       .min_factor(options_.min_lr_factor())),
      gen_(make_generator(mix_seed(options_.seed()))) {
  options_.validate();
  MD_CHECK_VALUE(model_ != nullptr, "Trainer: model is null");
  MD_CHECK_VALUE(static_cast<bool>(network_), "Trainer: network function is empty");
  MD_CHECK_VALUE(static_cast<bool>(train_.next), "Trainer: the training DataSource has no next()");
  MD_CHECK_VALUE(!validation_ || static_cast<bool>(validation_->next), "Trainer: the validation DataSource has no next()");
  MD_CHECK_VALUE(options_.validation_every() == 0 || validation_.has_value(), "Trainer: validation_every = ",
                 options_.validation_every(), " needs a validation DataSource");
  bf16_ = resolve_bf16(options_.precision(), options_.device());  // rejects bf16 where it cannot run
  const auto params = model_->parameters(true);
  MD_CHECK_VALUE(!params.empty(), "Trainer: the model has no parameters");
  model_->to(options_.device());
  optimizer_ = make_optimizer();
  if (options_.ema_decay() > 0) ema_.emplace(*model_, EMAOptions().decay(options_.ema_decay()).warmup(options_.ema_warmup()));
  denoiser_ = std::make_unique<Denoiser>(
      [this](const at::Tensor& x, const at::Tensor& t, const at::Tensor& cond) {
        return network_(x, t, cond, current_augment_);
      },
      std::move(schedule), std::move(denoiser_options));
}

Trainer::~Trainer() = default;

std::unique_ptr<torch::optim::AdamW> Trainer::make_optimizer() const {
  return std::make_unique<torch::optim::AdamW>(model_->parameters(true),
                                               torch::optim::AdamWOptions(options_.lr())
                                                   .betas({options_.beta1(), options_.beta2()})
                                                   .eps(options_.adam_eps())
                                                   .weight_decay(options_.weight_decay()));
}

void Trainer::add_loss_term(std::shared_ptr<LossTerm> term, double weight) {
  MD_CHECK_VALUE(term != nullptr, "Trainer::add_loss_term: term is null");
  MD_CHECK_VALUE(std::isfinite(weight), "Trainer::add_loss_term: weight must be finite, got ", weight);
  const std::string name = term->name();
  MD_CHECK_VALUE(!name.empty(), "Trainer::add_loss_term: the term has an empty name");
  for (const auto& [t, w] : terms_) {
    MD_CHECK_VALUE(t->name() != name, "Trainer::add_loss_term: a term named '", name, "' is already there");
  }
  terms_.emplace_back(std::move(term), weight);
}

void Trainer::add_callback(std::shared_ptr<TrainerCallback> callback) {
  MD_CHECK_VALUE(callback != nullptr, "Trainer::add_callback: callback is null");
  callbacks_.push_back(std::move(callback));
}

double Trainer::current_lr() const { return options_.lr() * lr_schedule_.factor(std::min(step_, options_.steps() - 1)); }

at::Tensor Trainer::prepare_labels(const at::Tensor& labels) {
  if (!labels.defined()) return labels;
  at::Tensor l = labels;
  if (options_.label_dropout() > 0) {
    MD_CHECK_TYPE(!at::isFloatingType(l.scalar_type()), "Trainer: label_dropout needs integer class labels, got ",
                  l.scalar_type());
    const int64_t world = comm_ ? comm_->world_size() : 1;
    const int64_t rank = comm_ ? comm_->rank() : 0;
    const at::Tensor drop =
        at::rand({l.size(0) * world}, gen_, at::TensorOptions(at::kDouble)).narrow(0, rank * l.size(0), l.size(0)) <
        options_.label_dropout();
    l = at::where(drop.to(l.device()).view({-1}), at::full_like(l, -1), l);
  }
  return l.to(options_.device());
}

TrainStepInfo Trainer::train_step() {
  MD_CHECK(step_ < options_.steps(), "Trainer: the run is complete (", step_, " of ", options_.steps(), " steps)");
  model_->train();
  optimizer_->zero_grad();
  TrainStepInfo info;
  info.total_steps = options_.steps();
  const int64_t accum = options_.grad_accumulation();
  const bool distributed = comm_ && comm_->world_size() > 1;
  const int64_t world = distributed ? comm_->world_size() : 1;
  const int64_t rank = distributed ? comm_->rank() : 0;
  double loss_sum = 0;
  bool finite = true;
  // Distributed, every rank runs every micro-batch and its backward (the all-reduces must match);
  // a non-finite loss anywhere makes every rank skip the step.
  for (int64_t k = 0; k < accum && (finite || distributed); ++k) {
    const TrainBatch b = train_.next();
    check_defined(b.x0, "batch.x0");
    check_non_empty(b.x0, "batch.x0");
    check_floating(b.x0, "batch.x0");
    const at::Tensor x0 = b.x0.to(options_.device(), at::kFloat);
    const at::Tensor labels = prepare_labels(b.labels);
    current_augment_ = b.augment.defined() ? b.augment.to(options_.device(), at::kFloat) : at::Tensor();
    const int64_t n = x0.size(0);
    if (distributed && !batch_checked_) {
      comm_->check_same(n, "the local batch size (every rank must take the same number of rows)");
      batch_checked_ = true;
    }
    // Timesteps and noise of the global batch; this rank keeps its rows.
    std::vector<int64_t> global_shape = x0.sizes().vec();
    global_shape[0] = n * world;
    const at::Tensor t = denoiser_->sample_timesteps(n * world, gen_).narrow(0, rank * n, n).to(options_.device());
    const at::Tensor noise =
        at::randn(global_shape, gen_, at::TensorOptions(at::kFloat)).narrow(0, rank * n, n).to(options_.device());
    at::Tensor total;
    {
      AutocastScope autocast(bf16_);
      at::Tensor input_noise;
      for (const auto& [term, weight] : terms_) {
        at::Tensor n = term->input_noise(input_noise.defined() ? input_noise : noise, gen_);
        if (n.defined()) {
          check_same_shape(n, "input_noise", noise, "noise");
          input_noise = std::move(n);
        }
      }
      const Denoiser::LossTerms lt = denoiser_->training_loss_terms(x0, t, noise, labels, input_noise);
      total = lt.loss;
      for (const auto& [term, weight] : terms_) {
        const LossContext ctx{*denoiser_, x0, lt.x_t, t, noise, labels, lt.output, lt.pred, lt.alpha_bar, step_};
        const at::Tensor l = term->loss(ctx);
        check_defined(l, "loss term output");
        MD_CHECK_VALUE(l.numel() == 1, "Trainer: loss term '", term->name(), "' returned shape ", shape_string(l),
                       ", expected a scalar");
        const double lv = l.item<double>();
        info.scalars["loss_" + term->name()] += lv / static_cast<double>(accum);
        total = total + weight * l.to(at::kFloat).reshape({});
      }
    }
    current_augment_ = at::Tensor();
    const double lv = total.item<double>();
    if (!std::isfinite(lv)) {
      finite = false;
      if (!distributed) break;
    }
    const bool last = k == accum - 1;
    if (sync_ && last) sync_->arm();
    (total / static_cast<double>(accum)).backward();
    if (sync_ && last) sync_->finish();
    loss_sum += lv;
  }
  if (distributed) {
    // The mean loss over the ranks, and whether any rank saw a non-finite one.
    at::Tensor agg = at::tensor({finite ? loss_sum : 0.0, finite ? 0.0 : 1.0}, at::TensorOptions(at::kDouble))
                         .to(comm_->device());
    comm_->all_reduce_sum(agg);
    agg = agg.cpu();
    finite = agg[1].item<double>() == 0.0;
    loss_sum = agg[0].item<double>() / static_cast<double>(world);
  }
  std::vector<at::Tensor> params;
  for (const auto& p : model_->parameters(true)) {
    if (p.grad().defined()) params.push_back(p);
  }
  double norm = 0;
  if (finite && !params.empty()) {
    const double max_norm = options_.grad_clip() > 0 ? options_.grad_clip() : std::numeric_limits<double>::infinity();
    norm = torch::nn::utils::clip_grad_norm_(params, max_norm);
    finite = std::isfinite(norm);
  }
  info.lr = options_.lr() * lr_schedule_.factor(step_);
  // Faults: a non-finite loss or gradient, a loss spike, an exploding gradient. The decisions use
  // values every rank of a distributed job shares (the all-reduced loss and gradients).
  const double step_loss = loss_sum / static_cast<double>(accum);
  const bool detecting = accepted_ >= options_.spike_warmup();
  if (!finite) {
    info.skip_reason = "nonfinite";
  } else if (options_.loss_spike_factor() > 0 && detecting && step_loss > options_.loss_spike_factor() * loss_mean_) {
    info.skip_reason = "loss_spike";
  } else if (options_.grad_spike_factor() > 0 && detecting && norm > options_.grad_spike_factor() * norm_mean_) {
    info.skip_reason = "grad_spike";
  }
  if (!info.skip_reason.empty()) {
    optimizer_->zero_grad();
    ++skipped_;
    ++consecutive_skips_;
    info.skipped_this_step = true;
    const std::string why = info.skip_reason == "nonfinite"
                                ? std::string("a non-finite loss or gradient")
                            : info.skip_reason == "loss_spike"
                                ? fmt::format("a loss spike: {:.4g} against a running mean of {:.4g}", step_loss, loss_mean_)
                                : fmt::format("a gradient spike: norm {:.4g} against a running mean of {:.4g}", norm,
                                              norm_mean_);
    MD_CHECK(skipped_ <= options_.max_nonfinite(), "Trainer: stopping at step ", step_, ": ", skipped_,
             " steps were skipped (this one: ", why, "; max_nonfinite = ", options_.max_nonfinite(),
             "); lower the learning rate or check the data");
  } else {
    for (auto& group : optimizer_->param_groups()) group.options().set_lr(info.lr);
    optimizer_->step();
    if (ema_) ema_->update(*model_);
    // Running means: the plain mean over the first spike_warmup steps, then an exponential one.
    const double w = accepted_ < options_.spike_warmup() ? 1.0 / static_cast<double>(accepted_ + 1) : 0.02;
    loss_mean_ += w * (step_loss - loss_mean_);
    norm_mean_ += w * (norm - norm_mean_);
    ++accepted_;
    consecutive_skips_ = 0;
  }
  for (const auto& [term, weight] : terms_) {
    term->after_step(step_);
    for (const auto& [k, v] : term->scalars()) info.scalars[term->name() + "_" + k] = v;
  }
  ++step_;
  info.step = step_;
  info.loss = finite ? step_loss : std::numeric_limits<double>::quiet_NaN();
  info.grad_norm = norm;
  info.skipped = skipped_;
  if (options_.rollback_after() > 0 && consecutive_skips_ >= options_.rollback_after()) {
    info.rolled_back_to = rollback();
  }
  return info;
}

double Trainer::validate() {
  MD_CHECK(validation_.has_value(), "Trainer::validate: no validation DataSource was given");
  if (validation_cache_.empty()) {
    for (int64_t i = 0; i < options_.validation_batches(); ++i) validation_cache_.push_back(validation_->next());
  }
  at::Generator gen = make_generator(mix_seed(options_.seed() ^ 0x76616c6964ULL));
  double sum = 0;
  int64_t count = 0;
  const bool was_training = model_->is_training();
  model_->eval();
  with_ema_weights([&] {
    at::NoGradGuard no_grad;
    for (const TrainBatch& b : validation_cache_) {
      const at::Tensor x0 = b.x0.to(options_.device(), at::kFloat);
      const at::Tensor labels = b.labels.defined() ? b.labels.to(options_.device()) : at::Tensor();
      current_augment_ = b.augment.defined() ? b.augment.to(options_.device(), at::kFloat) : at::Tensor();
      const int64_t n = x0.size(0);
      const at::Tensor t = denoiser_->sample_timesteps(n, gen).to(options_.device());
      const at::Tensor noise = at::randn(x0.sizes(), gen, at::TensorOptions(at::kFloat)).to(options_.device());
      sum += denoiser_->training_loss(x0, t, noise, labels).item<double>() * static_cast<double>(n);
      count += n;
    }
    current_augment_ = at::Tensor();
  });
  model_->train(was_training);
  return sum / static_cast<double>(count);
}

void Trainer::with_ema_weights(const std::function<void()>& fn) {
  if (!ema_) {
    fn();
    return;
  }
  ema_->store(*model_);
  ema_->copy_to(*model_);
  try {
    fn();
  } catch (...) {
    ema_->restore(*model_);
    throw;
  }
  ema_->restore(*model_);
}

void Trainer::open_log() {
  if (options_.out_dir().empty() || log_.is_open() || !is_main_process()) return;
  make_directories(options_.out_dir());
  const std::string path = (fs::path(options_.out_dir()) / "train_log.jsonl").string();
  // Lines written after the checkpoint we resumed from (by a killed run) are dropped, so the log
  // reads as one run.
  std::error_code ec;
  if (fs::exists(path, ec)) {
    std::ifstream in(path);
    std::ostringstream kept;
    std::string line;
    while (std::getline(in, line)) {
      const auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains("step") || !j["step"].is_number_integer()) continue;
      if (j["step"].get<int64_t>() <= step_) kept << line << "\n";
    }
    atomic_write_text(path, kept.str());
  }
  log_.open(path, std::ios::app);
  MD_CHECK(log_.good(), "Trainer: cannot open '", path, "' for writing");
}

void Trainer::log_line(const TrainStepInfo& info, double val_loss) {
  if (!log_.is_open()) return;
  nlohmann::json j;
  j["step"] = info.step;
  j["loss"] = log_loss_count_ > 0 ? log_loss_sum_ / static_cast<double>(log_loss_count_) : info.loss;
  j["lr"] = info.lr;
  j["grad_norm"] = info.grad_norm;
  j["steps_per_second"] = info.steps_per_second;
  j["elapsed_seconds"] = info.seconds;
  j["skipped"] = info.skipped;
  if (!info.skip_reason.empty()) j["skip_reason"] = info.skip_reason;
  if (info.rolled_back_to >= 0) j["rolled_back_to"] = info.rolled_back_to;
  for (const auto& [k, v] : info.scalars) j[k] = v;
  if (std::isfinite(val_loss)) j["val_loss"] = val_loss;
  log_ << j.dump() << "\n";
  log_.flush();
  log_loss_sum_ = 0;
  log_loss_count_ = 0;
}

TrainResult Trainer::fit() {
  TrainResult result;
  fit_start_ = std::chrono::steady_clock::now();
  open_log();
  stop_requested_ = false;
  for (auto& cb : callbacks_) cb->on_begin(*this);
  const int64_t first = step_;
  int64_t last_checkpoint = -1;
  double window_start = 0;
  int64_t window_steps = 0;
  bool stop = false;
  while (step_ < options_.steps() && !stop) {
    TrainStepInfo info = train_step();
    const double now = std::chrono::duration<double>(std::chrono::steady_clock::now() - fit_start_).count();
    ++window_steps;
    if (now - window_start >= 1.0 || steps_per_second_ == 0) {
      const double rate = static_cast<double>(window_steps) / std::max(1e-9, now - window_start);
      steps_per_second_ = steps_per_second_ == 0 ? rate : 0.5 * steps_per_second_ + 0.5 * rate;
      window_start = now;
      window_steps = 0;
    }
    info.seconds = now;
    info.steps_per_second = steps_per_second_;
    if (!info.skipped_this_step) {
      log_loss_sum_ += info.loss;
      ++log_loss_count_;
      result.final_loss = info.loss;
    }
    double val = std::numeric_limits<double>::quiet_NaN();
    if (options_.validation_every() > 0 && step_ % options_.validation_every() == 0) {
      val = validate();
      result.last_val_loss = val;
      for (auto& cb : callbacks_) stop = cb->on_validation(*this, step_, val) || stop;
    }
    if ((options_.log_every() > 0 && step_ % options_.log_every() == 0) || step_ == options_.steps() ||
        std::isfinite(val) || info.skipped_this_step || info.rolled_back_to >= 0) {
      log_line(info, val);
    }
    if (options_.checkpoint_every() > 0 && step_ % options_.checkpoint_every() == 0) {
      checkpoint_collectively();
      last_checkpoint = step_;
    }
    for (auto& cb : callbacks_) stop = cb->on_step(*this, info) || stop;
    stop = stop || stop_requested_;
    if (comm_ && comm_->world_size() > 1) stop = comm_->any(stop);  // every rank stops at the same step
  }
  result.stopped_by_callback = stop && step_ < options_.steps();
  if (options_.checkpoint_every() > 0 && last_checkpoint != step_ && step_ > first) checkpoint_collectively();
  for (auto& cb : callbacks_) cb->on_end(*this);
  result.steps = step_;
  result.steps_this_run = step_ - first;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - fit_start_).count();
  result.skipped = skipped_;
  result.rollbacks = rollbacks_;
  return result;
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

std::string Trainer::save_checkpoint() {
  MD_CHECK_VALUE(!options_.out_dir().empty(), "Trainer::save_checkpoint: no out_dir set");
  if (!is_main_process()) return "";
  const std::string dir = (fs::path(options_.out_dir()) / "checkpoints").string();
  make_directories(dir);
  const std::string path = checkpoint_path(dir, step_);
  save_checkpoint(path);
  prune_checkpoints(dir, options_.keep_last());
  return path;
}

StateFile Trainer::checkpoint_state(bool copy) const {
  auto own = [copy](const at::Tensor& t) { return copy ? t.detach().clone() : t.detach(); };
  auto own_all = [&](NamedTensors list) {
    for (auto& [name, t] : list) t = own(t);
    return list;
  };
  StateFile f(kTrainerCheckpointKind, kTrainerCheckpointFormat);
  f.metadata["step"] = std::to_string(step_);
  f.metadata["skipped"] = std::to_string(skipped_);
  f.metadata["total_steps"] = std::to_string(options_.steps());
  f.metadata["optimizer"] = optimizer_description();
  f.add_section("model", own_all(module_state(*model_)));
  if (ema_) f.add_section("ema", own_all(ema_->named_state()));
  // Not copied even for a snapshot: loading builds a new optimizer from copies of these.
  f.add_section("optimizer", optimizer_state(*optimizer_, model_->parameters(true)));
  NamedTensors rng{{"trainer", generator_state(gen_)}};
  const auto defaults = default_generators();
  for (size_t i = 0; i < defaults.size(); ++i) rng.emplace_back("default" + std::to_string(i), generator_state(defaults[i]));
  f.add_section("rng", rng);
  NamedTensors data;
  if (train_.state) data.emplace_back("train", own(train_.state()));
  f.add_section("data", data);
  f.add_section("guard", {{"values", at::tensor({loss_mean_, norm_mean_, static_cast<double>(accepted_),
                                                 static_cast<double>(consecutive_skips_), static_cast<double>(rollbacks_)},
                                                at::TensorOptions(at::kDouble))}});
  for (const auto& [term, w] : terms_) f.add_section("term." + term->name(), own_all(term->state()));
  return f;
}

void Trainer::save_checkpoint(const std::string& path) {
  for (const auto& [name, t] : module_state(*model_)) {
    MD_CHECK(!at::isFloatingType(t.scalar_type()) || at::isfinite(t).all().item<bool>(), "Trainer: refusing to write '",
             path, "': model tensor '", name, "' has non-finite values");
  }
  std::vector<uint8_t> bytes;
  try {
    bytes = checkpoint_state(false).encode();
  } catch (const c10::Error& e) {
    MD_CHECK(false, "Trainer: cannot write '", path, "': ", e.what_without_backtrace());
  }
  write_file_atomically(path, bytes.data(), bytes.size());
}

void Trainer::load_checkpoint(const std::string& path) {
  const std::string what = "Trainer: checkpoint '" + path + "'";
  apply_checkpoint(StateFile::load(path, kTrainerCheckpointKind, kTrainerCheckpointFormat, what), what);
}

void Trainer::load_checkpoint_bytes(const std::string& bytes, const std::string& what_) {
  const std::string what = "Trainer: " + what_;
  apply_checkpoint(StateFile::decode(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                     kTrainerCheckpointKind, kTrainerCheckpointFormat, what),
                   what);
}

// A checkpoint read and checked against this trainer, ready to apply.
struct Trainer::ParsedCheckpoint {
  int64_t step = 0, skipped = 0;
  double loss_mean = 0, norm_mean = 0;
  int64_t accepted = 0, consecutive_skips = 0, rollbacks = 0;
  NamedTensors model, ema, rng, data;
  std::vector<NamedTensors> term_states;
  std::unique_ptr<torch::optim::AdamW> optimizer;
};

Trainer::ParsedCheckpoint Trainer::parse_checkpoint(const StateFile& f, const std::string& what, bool trusted) {
  ParsedCheckpoint c;
  c.step = f.metadata_int("step");
  c.skipped = f.metadata_int("skipped");
  MD_CHECK(c.step >= 0 && c.step <= options_.steps(), what, ": step ", c.step, " is outside this run's 0..",
           options_.steps());
  MD_CHECK(c.skipped >= 0 && c.skipped <= c.step, what, ": skipped ", c.skipped, " is outside 0..", c.step);
  at::Tensor guard;
  for (const auto& [name, t] : f.section("guard")) {
    if (name == "values") guard = t;
  }
  MD_CHECK(guard.defined() && guard.scalar_type() == at::kDouble && guard.dim() == 1 && guard.numel() == 5, what,
           ": missing or bad 'guard/values' entry (expected 5 float64 values)");
  const auto g = guard.contiguous();
  const double* v = g.data_ptr<double>();
  c.loss_mean = v[0];
  c.norm_mean = v[1];
  // The counters are whole numbers within the steps taken; anything else (a cast of 1e300 to an
  // integer is undefined) is refused.
  auto count = [&](double x, int64_t most, const char* field) {
    MD_CHECK(trusted || (std::isfinite(x) && x >= 0 && x <= static_cast<double>(most) && x == std::floor(x)), what,
             ": guard value '", field, "' must be a whole number in 0..", most, ", got ", x);
    return static_cast<int64_t>(x);
  };
  if (!trusted) {
    MD_CHECK(std::isfinite(c.loss_mean) && c.loss_mean >= 0 && std::isfinite(c.norm_mean) && c.norm_mean >= 0, what,
             ": guard means must be finite and >= 0, got loss ", c.loss_mean, " and gradient norm ", c.norm_mean);
  }
  c.accepted = count(v[2], c.step, "accepted");
  c.consecutive_skips = count(v[3], c.skipped, "consecutive_skips");
  c.rollbacks = count(v[4], c.step, "rollbacks");

  // The model: every floating-point parameter or buffer gets floating-point, finite values (names
  // and shapes are checked by load_module_state before it copies anything).
  c.model = f.section("model");
  c.ema = ema_ ? f.section("ema") : NamedTensors();
  if (!trusted) {
    std::map<std::string, at::ScalarType> own;
    for (const auto& p : model_->named_parameters(true)) own[p.key()] = p.value().scalar_type();
    for (const auto& b : model_->named_buffers(true)) own["buffer:" + b.key()] = b.value().scalar_type();
    // `key` maps a saved name to the model's ("" for entries that are not the model's tensors).
    auto check_values = [&](const NamedTensors& list, const char* section,
                            const std::function<std::string(const std::string&)>& key) {
      for (const auto& [name, t] : list) {
        MD_CHECK(!at::isFloatingType(t.scalar_type()) || at::isfinite(t).all().item<bool>(), what, ": ", section,
                 " tensor '", name, "' has non-finite values");
        const auto it = own.find(key(name));
        MD_CHECK(it == own.end() || at::isFloatingType(it->second) == at::isFloatingType(t.scalar_type()), what, ": ",
                 section, " tensor '", name, "' has dtype ", t.scalar_type(), " but the model holds ", it->second);
      }
    };
    check_values(c.model, "model", [](const std::string& n) { return n; });
    check_values(c.ema, "ema", ema_entry_module_name);
  }
  c.rng = f.section("rng");
  for (const auto& [name, st] : c.rng) {
    MD_CHECK(st.scalar_type() == at::kByte && st.dim() == 1, what, ": random state '", name,
             "' must be a 1-d uint8 tensor, got ", st.scalar_type(), " of shape ", st.sizes());
  }
  c.data = f.section("data");
  for (const auto& [term, w] : terms_) c.term_states.push_back(f.section("term." + term->name()));
  c.optimizer = make_optimizer();
  load_optimizer_state(*c.optimizer, model_->parameters(true), f.section("optimizer"), what, trusted);
  return c;
}

void Trainer::apply_parsed(ParsedCheckpoint& c, const std::string& what) {
  load_module_state(*model_, c.model, what);  // checks names and shapes before it copies
  optimizer_ = std::move(c.optimizer);
  if (ema_) ema_->load_named_state(c.ema);
  auto defaults = default_generators();
  for (const auto& [name, st] : c.rng) {
    if (name == "trainer") {
      set_generator_state(gen_, st);
    } else if (name.rfind("default", 0) == 0) {
      size_t i = 0;
      const std::string digits = name.substr(7);
      const auto r = std::from_chars(digits.data(), digits.data() + digits.size(), i);
      if (r.ec == std::errc() && r.ptr == digits.data() + digits.size() && i < defaults.size()) {
        set_generator_state(defaults[i], st);
      }
    }
  }
  for (const auto& [name, st] : c.data) {
    if (name == "train") {
      MD_CHECK(static_cast<bool>(train_.load_state), what, ": the data source cannot restore its position");
      train_.load_state(st);
    }
  }
  for (size_t i = 0; i < terms_.size(); ++i) terms_[i].first->load_state(c.term_states[i]);
  step_ = c.step;
  skipped_ = c.skipped;
  loss_mean_ = c.loss_mean;
  norm_mean_ = c.norm_mean;
  accepted_ = c.accepted;
  consecutive_skips_ = c.consecutive_skips;
  rollbacks_ = c.rollbacks;
}

std::string Trainer::optimizer_description() const {
  return fmt::format("AdamW betas {} {} eps {} weight_decay {}", options_.beta1(), options_.beta2(), options_.adam_eps(),
                     options_.weight_decay());
}

void Trainer::apply_checkpoint(const StateFile& f, const std::string& what) {
  // Everything the file alone decides is checked first: a failure there changes nothing.
  ParsedCheckpoint parsed = parse_checkpoint(f, what, /*trusted=*/false);
  // The optimizer's settings come from this trainer's options (the learning rate from the step);
  // a checkpoint trained with other settings resumes, but not as the run it came from would.
  const auto saved = f.metadata.find("optimizer");
  if (saved != f.metadata.end() && saved->second != optimizer_description() && is_main_process()) {
    fmt::print(stderr, "warning: {} was trained with {}; it resumes with this trainer's {}\n", what, saved->second,
               optimizer_description());
  }
  // Applying can still be refused half-way (a random state LibTorch rejects, a data position or a
  // loss-term state its owner refuses, any exception of theirs): the state from before, kept
  // here, is put back without the file checks (it may hold non-finite weights: it is the
  // trainer's own).
  ParsedCheckpoint before = parse_checkpoint(checkpoint_state(true), "Trainer: the state before the load", true);
  std::string msg;
  try {
    apply_parsed(parsed, what);
    return;
  } catch (const c10::Error& e) {
    msg = e.what_without_backtrace();
  } catch (const std::exception& e) {
    msg = e.what();
  }
  try {
    apply_parsed(before, "Trainer: the state before the load");
  } catch (const std::exception& e) {
    MD_CHECK(false, what, ": ", msg, "; putting the previous state back failed as well: ", e.what(),
             " (the trainer's state is now undefined: load a checkpoint)");
  }
  if (msg.rfind(what, 0) == 0) MD_CHECK(false, msg);
  MD_CHECK(false, what, ": ", msg);
}

bool Trainer::resume() {
  MD_CHECK_VALUE(!options_.out_dir().empty(), "Trainer::resume: no out_dir set");
  if (comm_ && comm_->world_size() > 1) return resume_distributed();
  const auto files = list_checkpoints((fs::path(options_.out_dir()) / "checkpoints").string());
  if (files.empty()) return false;
  std::string errors;
  for (auto it = files.rbegin(); it != files.rend(); ++it) {
    try {
      load_checkpoint(it->path);
      if (!errors.empty()) fmt::print(stderr, "warning: skipped unreadable checkpoints:{}\n", errors);
      return true;
    } catch (const c10::Error& e) {
      errors += "\n  " + std::string(e.what_without_backtrace());
    }
  }
  MD_CHECK(false, "Trainer::resume: no readable checkpoint in '", options_.out_dir(), "/checkpoints':", errors);
  return false;
}


// ---------------------------------------------------------------------------------------------
// Distributed

int64_t Trainer::rollback() {
  // Weights, optimiser, EMA and loss-term states from the newest checkpoint; the step count, the
  // data position and all random state go on from here.
  const int64_t step = step_, skipped = skipped_, rollbacks = rollbacks_;
  const at::Tensor gen_state = generator_state(gen_);
  auto defaults = default_generators();
  std::vector<at::Tensor> default_states;
  for (auto& g : defaults) default_states.push_back(generator_state(g));
  const at::Tensor data_state = train_.state ? train_.state() : at::Tensor();
  const bool found = resume();
  const int64_t to = found ? step_ : -1;
  step_ = step;
  skipped_ = skipped;
  set_generator_state(gen_, gen_state);
  for (size_t i = 0; i < defaults.size(); ++i) set_generator_state(defaults[i], default_states[i]);
  if (data_state.defined() && train_.load_state) train_.load_state(data_state);
  consecutive_skips_ = 0;
  if (!found) {
    if (is_main_process()) {
      fmt::print(stderr, "warning: step {}: {} consecutive skipped steps and no checkpoint to roll back to\n", step_,
                 options_.rollback_after());
    }
    return -1;
  }
  rollbacks_ = rollbacks + 1;
  if (is_main_process()) {
    fmt::print(stderr, "warning: step {}: {} consecutive skipped steps; rolled the weights back to the checkpoint of step {}\n",
               step_, options_.rollback_after(), to);
  }
  return to;
}

void Trainer::checkpoint_collectively() {
  if (!comm_ || comm_->world_size() == 1) {
    save_checkpoint();
    return;
  }
  // Rank 0 writes; the others learn at once when that failed (a full disk, non-finite weights)
  // instead of waiting out the collective timeout at the next step.
  std::string failure;
  try {
    save_checkpoint();
  } catch (const c10::Error& e) {
    failure = e.what_without_backtrace();
  }
  MD_CHECK(!comm_->any(!failure.empty()), "Trainer: the checkpoint of step ", step_, " could not be written",
           failure.empty() ? std::string(" (see rank 0's error)") : ": " + failure);
}

bool Trainer::is_main_process() const { return !comm_ || comm_->rank() == 0; }

void Trainer::distribute(std::shared_ptr<Communicator> comm, GradientSyncOptions sync) {
  MD_CHECK_VALUE(comm != nullptr, "Trainer::distribute: comm is null");
  MD_CHECK_VALUE(comm_ == nullptr, "Trainer::distribute: already distributed");
  MD_CHECK_VALUE(options_.device() == comm->device(), "Trainer::distribute: the trainer runs on ", options_.device(),
                 " but the communicator's ", to_string(comm->backend()), " backend works on ", comm->device(),
                 "; train on the communicator's device");
  sync.validate();
  comm_ = std::move(comm);
  if (comm_->world_size() == 1) return;
  comm_->check_same(options_.steps(), "the number of training steps");
  comm_->check_same(options_.grad_accumulation(), "grad_accumulation");
  comm_->check_same(static_cast<int64_t>(options_.seed()), "the trainer seed");
  comm_->check_same(step_, "the current step (call distribute() before resume())");
  broadcast_module(*comm_, *model_);
  if (ema_) {
    NamedTensors state = ema_->named_state();
    std::vector<at::Tensor> values;
    for (const auto& [name, t] : state) values.push_back(t);
    broadcast_tensors(*comm_, values);
    ema_->load_named_state(state);
  }
  sync_ = std::make_unique<GradientSync>(comm_, model_->parameters(true), sync);
}

bool Trainer::resume_distributed() {
  // Rank 0 finds the newest readable checkpoint (its own out_dir is the one that counts) and sends
  // its bytes; every rank loads the same bytes, so a job resumes with any number of ranks, with
  // or without a shared file system. A failure anywhere fails every rank.
  std::string bytes;
  std::string errors;
  bool any_file = false;
  if (comm_->rank() == 0) {
    const auto files = list_checkpoints((fs::path(options_.out_dir()) / "checkpoints").string());
    any_file = !files.empty();
    for (auto it = files.rbegin(); it != files.rend(); ++it) {
      try {
        const std::vector<uint8_t> file = read_file_bytes(it->path);
        std::string candidate(file.begin(), file.end());
        load_checkpoint_bytes(candidate, "checkpoint '" + it->path + "'");
        bytes = std::move(candidate);
        break;
      } catch (const c10::Error& e) {
        errors += "\n  " + std::string(e.what_without_backtrace());
      }
    }
    if (!errors.empty() && !bytes.empty()) fmt::print(stderr, "warning: skipped unreadable checkpoints:{}\n", errors);
  }
  // -1: there are checkpoints and none could be read.
  const int64_t announced = bytes.empty() ? (any_file ? -1 : 0) : static_cast<int64_t>(bytes.size());
  at::Tensor size = at::tensor({announced}, at::TensorOptions(at::kLong)).to(comm_->device());
  std::vector<at::Tensor> one{size};
  comm_->broadcast(one);
  const int64_t n = size.cpu().item<int64_t>();
  MD_CHECK(n >= 0, "Trainer::resume: rank 0 found no readable checkpoint in '", options_.out_dir(), "/checkpoints'",
           comm_->rank() == 0 ? errors : std::string(" (see rank 0's error)"));
  if (n == 0) return false;
  at::Tensor data = comm_->rank() == 0 ? at::from_blob(bytes.data(), {n}, at::TensorOptions(at::kByte)).clone()
                                       : at::empty({n}, at::TensorOptions(at::kByte));
  std::vector<at::Tensor> payload{data.to(comm_->device())};
  comm_->broadcast(payload);
  std::string failure;
  if (comm_->rank() != 0) {
    try {
      const at::Tensor host = payload[0].cpu().contiguous();
      const std::string received(reinterpret_cast<const char*>(host.data_ptr<uint8_t>()), static_cast<size_t>(n));
      load_checkpoint_bytes(received, "checkpoint from rank 0");
    } catch (const c10::Error& e) {
      failure = e.what_without_backtrace();
    }
  }
  MD_CHECK(!comm_->any(!failure.empty()), "Trainer::resume: a rank could not load rank 0's checkpoint",
           failure.empty() ? std::string(" (see that rank's error)") : ": " + failure);
  comm_->check_same(step_, "the resumed step");
  return true;
}
}  // namespace manifold_diffusion
