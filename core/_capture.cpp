// The recorder's per-step plumbing in C++ (core.compiled builds it; core.capture.CompiledRecorder drives it).
//
// On a capture step Python makes a handful of calls instead of one per tensor:
//   begin(); watch(i, out) per watched output (a C++ gradient hook: no Python runs in backward);
//   before_update(step); <update>; after_update(step, tag)
// and later ready(wait) hands back the finished records. after_update submits the step under the layout
// (keys, bucket edges) of the set of tensors it had, or, the first time that set is seen, returns it for
// Python to describe (submit_new). Python's tag (the step's loss, its raster) and the description of its
// tensors travel with the step, so a record can never be matched with another step's. The numbers come from core.kernels (the same
// numba code as the Python recorder, called through C function pointers), on the spot or on a worker
// thread that never takes the GIL: what it has finished with is released by the training thread.
#include <pybind11/numpy.h>
#include <torch/csrc/autograd/function.h>
#include <torch/extension.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace py = pybind11;

// core.compiled's cfuncs (see there for what each computes)
typedef void (*SummarizeFn)(const int64_t*, const int64_t*, int64_t, const bool*, const bool*, const float*, float*,
                            int32_t*, int64_t, double*, float*);
typedef void (*InPlaceFn)(const int64_t*, const int64_t*, const int64_t*, int64_t, float*, double*);
typedef void (*CopyFn)(const int64_t*, const int64_t*, const int64_t*, int64_t, float*);
typedef void (*FlatFn)(const float*, const float*, const int64_t*, const int64_t*, int64_t, double*);
typedef void (*FinishFn)(const double*, int64_t, const bool*, const double*, const int64_t*, int64_t, float*, float*);

// one tensor a step keeps for the kernels: a contiguous float32 CPU tensor by its storage (what keeps its
// values alive) and where they are in it -- a reference count, where a detached alias costs a dispatched
// call; anything else (another dtype or device, strides, no plain storage) as a detached tensor, converted
// when the step is gathered
struct Held {
  c10::Storage storage;
  at::Tensor tensor;
  int64_t offset = 0, size = 0;  // in bytes from the storage's start; in values

  Held() = default;
  explicit Held(const at::Tensor& t) {
    if (t.layout() == at::kStrided && t.scalar_type() == at::kFloat && t.device().is_cpu() && t.has_storage()) {
      const c10::Storage& s = t.unsafeGetTensorImpl()->unsafe_storage();
      if (s && s.device().is_cpu() && t.is_contiguous() && (s.data() != nullptr || t.numel() == 0) &&
          s.nbytes() >= static_cast<size_t>((t.storage_offset() + t.numel()) * 4)) {
        storage = s;
        offset = t.storage_offset() * 4;
        size = t.numel();
        return;
      }
    }
    tensor = t.detach();
  }
  bool defined() const { return storage || tensor.defined(); }
  void reset() {
    storage = c10::Storage();
    tensor.reset();
  }
};

// the gradients caught in one backward pass; a hook writes only if its output is still the one watched
struct Slots {
  std::vector<Held> grads;
  std::vector<int64_t> gen;
  explicit Slots(size_t n) : grads(n), gen(n, -1) {}
};

// a pre-hook on the autograd node that made a watched output: it receives the gradients of the node's outputs
// (as the Python recorder's node pre-hook does) and keeps the watched one's, output `nr`; one allocation,
// where a tensor hook (register_hook) takes four
struct GradCatcher : torch::autograd::FunctionPreHook {
  std::shared_ptr<Slots> slots;
  int64_t i, g;
  size_t nr;
  GradCatcher(std::shared_ptr<Slots> s, int64_t i, int64_t g, size_t nr) : slots(std::move(s)), i(i), g(g), nr(nr) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& grads) override {
    if (nr < grads.size() && grads[nr].defined() && slots->gen[i] == g) slots->grads[i] = Held(grads[nr]);
    return grads;
  }
};

// one list of keys (Python's core.histogram._Layout): its arrays are shared with numpy, edges updated in place
struct Layout {
  at::Tensor tanh, relu, thr, edges, wgrad;
};

struct Job {
  int64_t step = 0;
  py::object tag, described;  // Python's (only ever dropped by the training thread, which holds the GIL)
  std::shared_ptr<Layout> layout;
  int64_t values = 0;
  std::vector<c10::Storage> storages;  // what keeps the values at addrs alive: read in place
  std::vector<at::Tensor> tensors;     // (or float32 contiguous CPU versions of tensors that were not)
  std::vector<int64_t> addrs, sizes;
  // the numbers (rows of k tensors or w parameters): plain buffers, no torch allocation to dispatch
  int64_t w = 0;
  std::vector<int32_t> counts;   // (k, bins + 2)
  std::vector<float> used;       // (k, 2)
  std::vector<double> stats64;   // (k, 6)
  std::vector<float> stats;      // (k, 6)
  std::vector<double> std;       // (w, 2)
  std::vector<float> wratio;     // (w, 3)
};

// what jobs the worker has finished held (storages, tensors, their layout: numpy arrays at the bottom),
// waiting for the training thread to drop them
struct Released {
  std::vector<c10::Storage> storages;
  std::vector<at::Tensor> tensors;
  std::vector<std::shared_ptr<Layout>> layouts;
  void add(Job& j) {
    for (auto& s : j.storages) storages.push_back(std::move(s));
    for (auto& t : j.tensors) tensors.push_back(std::move(t));
    layouts.push_back(std::move(j.layout));
    j.storages.clear();
    j.tensors.clear();
  }
  void swap(Released& o) {
    storages.swap(o.storages);
    tensors.swap(o.tensors);
    layouts.swap(o.layouts);
  }
};

// a set of tensors seen before (after_update's mask): its layout, and Python's description of it
struct Known {
  std::shared_ptr<Layout> layout;
  py::object described;
};

class Steps {
 public:
  Steps(std::vector<at::Tensor> params, int64_t points, int64_t bins, std::vector<uintptr_t> fns, bool background,
        int64_t max_pending)
      : params_(std::move(params)), points_(points), bins_(bins), background_(background),
        max_pending_(max_pending), acts_(points) {
    if (fns.size() != 5) throw std::invalid_argument("Steps: five kernel addresses expected");
    summarize_ = reinterpret_cast<SummarizeFn>(fns[0]);
    in_place_ = reinterpret_cast<InPlaceFn>(fns[1]);
    copy_ = reinterpret_cast<CopyFn>(fns[2]);
    flat_ = reinterpret_cast<FlatFn>(fns[3]);
    finish_ = reinterpret_cast<FinishFn>(fns[4]);
  }

  ~Steps() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) {
      py::gil_scoped_release nogil;
      worker_.join();
    }
  }

  // the step after_update returned the mask of (a set of tensors not seen before): submitted under this
  // layout, which later steps with the same mask get without asking Python; `described` is what
  // after_update returns for them
  void submit_new(const py::bytes& mask, py::object described, at::Tensor tanh, at::Tensor relu, at::Tensor thr,
                  at::Tensor edges, at::Tensor wgrad) {
    if (!staged_) throw std::logic_error("submit_new without after_update");
    auto layout = std::make_shared<Layout>(Layout{tanh, relu, thr, edges, wgrad});
    staged_->described = described;
    submit(layout);  // (which checks that it fits: only then is it kept, else it would fail every later step)
    if (known_.size() > 16) known_.clear();  // a model whose set of captured tensors keeps changing
    known_[std::string(mask)] = Known{layout, std::move(described)};
  }

  void begin() {
    slots_ = std::make_shared<Slots>(points_);
    for (auto& a : acts_) a.reset();
  }

  // output i of this forward pass: kept (by its storage), and its gradient caught by a C++ hook
  void watch(int64_t i, const at::Tensor& out) {
    if (i < 0 || i >= points_) throw std::out_of_range("watch: no such point");
    if (!slots_) begin();
    acts_[i] = Held(out);
    auto slots = slots_;
    int64_t g = ++gen_;
    slots->gen[i] = g;  // a later output of the same point replaces this one
    // (an output no loss depends on, a sibling of one that is, gets an undefined gradient: none)
    if (const auto& node = out.grad_fn()) {
      node->add_pre_hook(std::make_unique<GradCatcher>(std::move(slots), i, g, out.output_nr()));
    } else if (out.requires_grad()) {  // a leaf
      out.register_hook([slots, i, g](const at::Tensor& grad) {
        if (grad.defined() && slots->gen[i] == g) slots->grads[i] = Held(grad);
      });
    }
  }

  void watch_all(const std::vector<c10::optional<at::Tensor>>& outs) {
    for (size_t i = 0; i < outs.size() && static_cast<int64_t>(i) < points_; ++i)
      if (outs[i].has_value() && outs[i]->defined()) watch(static_cast<int64_t>(i), *outs[i]);
  }

  // before the update: theta = the parameters that have a gradient (unless it holds them, updated last step)
  void before_update(int64_t step) {
    updated_.clear();
    for (size_t q = 0; q < params_.size(); ++q)
      if (params_[q].grad().defined()) updated_.push_back(q);
    sizes_.clear();
    starts_.clear();
    int64_t total = 0;
    for (auto q : updated_) {
      sizes_.push_back(params_[q].numel());
      starts_.push_back(total);
      total += params_[q].numel();
    }
    std::vector<int64_t> addrs;
    bool readable = readable_addrs(addrs);
    bool same = theta_.defined() && theta_.numel() == total && updated_ == theta_params_ && sizes_ == theta_sizes_;
    if (same && theta_step_ == step - 1 && (!readable || addrs == theta_addrs_) && theta_readable_ == readable)
      return;  // theta holds the parameters as the last update left them
    if (readable) {
      if (!theta_.defined() || theta_.numel() != total || !theta_readable_) theta_ = at::empty({total}, at::kFloat);
      copy_(addrs.data(), sizes_.data(), starts_.data(), static_cast<int64_t>(addrs.size()), theta_.data_ptr<float>());
    } else {
      theta_ = flat();
    }
    theta_readable_ = readable;
    theta_addrs_ = addrs;
    theta_params_ = updated_;
    theta_sizes_ = sizes_;
    theta_step_ = -2;
  }

  // after the update: the update stds, and this step's tensors gathered into a job, submitted under the
  // layout of the set of tensors it had; returns that layout's description. The first time a set is seen:
  // returns which tensors were there (bytes: one per act, agrad, wgrad slot, then the parameters' shapes)
  // and Python describes them (submit_new).
  py::object after_update(int64_t step, py::object tag) {
    if (!theta_.defined() && !updated_.empty()) throw std::logic_error("after_update without before_update");
    auto job = std::make_shared<Job>();
    job->step = step;
    job->tag = std::move(tag);
    int64_t w = static_cast<int64_t>(updated_.size());
    job->w = w;
    job->std.resize(2 * w);
    std::vector<int64_t> addrs;
    bool readable = readable_addrs(addrs);
    if (readable && theta_readable_ && addrs == theta_addrs_) {
      in_place_(addrs.data(), sizes_.data(), starts_.data(), w, theta_.data_ptr<float>(), job->std.data());
    } else if (w > 0) {  // anything else: through torch, as the Python recorder does
      at::Tensor after = flat();
      const at::Tensor& before = theta_;  // float32, contiguous, laid out as `after`
      if (after.numel() != before.numel())
        throw std::runtime_error("step " + std::to_string(step) + ": the parameters changed size in the update");
      flat_(after.data_ptr<float>(), before.data_ptr<float>(), starts_.data(), sizes_.data(), w,
            job->std.data());
      theta_ = after;  // the next step's "before"
      theta_readable_ = readable;
      theta_addrs_ = addrs;
    }
    theta_step_ = step;

    std::string mask(2 * points_ + params_.size(), '\0');
    auto add = [&](Held&& h, size_t m) {
      if (h.storage) {
        if (h.storage.nbytes() < static_cast<size_t>(h.offset + h.size * 4))  // resized since: cannot be
          throw std::runtime_error("step " + std::to_string(step) + ": a captured tensor's storage shrank");
        job->addrs.push_back(reinterpret_cast<int64_t>(static_cast<const char*>(h.storage.data()) + h.offset));
        job->sizes.push_back(h.size);
        job->storages.push_back(std::move(h.storage));
      } else {
        at::Tensor c = h.tensor.to(at::kFloat).contiguous().cpu();
        job->addrs.push_back(reinterpret_cast<int64_t>(c.data_ptr()));
        job->sizes.push_back(c.numel());
        job->tensors.push_back(std::move(c));
      }
      job->values += job->sizes.back();
      mask[m] = 1;
    };
    for (int64_t i = 0; i < points_; ++i)
      if (acts_[i].defined()) add(std::move(acts_[i]), i);
    for (int64_t i = 0; i < points_; ++i)
      if (slots_ && slots_->grads[i].defined()) add(std::move(slots_->grads[i]), points_ + i);
    size_t with_grad = 0;
    for (size_t q = 0; q < params_.size(); ++q) {
      at::Tensor g = params_[q].grad();
      if (g.defined()) {
        add(Held(g), 2 * points_ + q);
        ++with_grad;
      }
    }
    if (with_grad != updated_.size())
      throw std::invalid_argument("step " + std::to_string(step) + ": " + std::to_string(with_grad) +
                               " parameters had a gradient at the update, " + std::to_string(updated_.size()) +
                               " before it");
    // and the parameters' shapes, which the record names (they may change between two advances)
    for (const auto& p : params_) {
      for (int64_t d : p.sizes()) mask.append(reinterpret_cast<const char*>(&d), sizeof d);
      mask.push_back('/');
    }
    staged_ = job;
    slots_.reset();
    for (auto& a : acts_) a.reset();
    auto known = known_.find(mask);
    if (known == known_.end()) return py::bytes(mask);
    job->described = known->second.described;
    submit(known->second.layout);
    return py::none();
  }

  void submit(const std::shared_ptr<Layout>& layout) {
    auto job = staged_;
    staged_.reset();
    check_fits(*layout, *job);
    int64_t k = static_cast<int64_t>(job->addrs.size());
    job->layout = layout;
    job->counts.resize(k * (bins_ + 2));
    job->used.resize(k * 2);
    job->stats64.resize(k * 6);
    job->stats.resize(k * 6);
    job->wratio.resize(job->w * 3);
    if (!background_) {
      run(*job);
      job->storages.clear();  // done with them: a finished step holds only its numbers
      job->tensors.clear();
      job->layout.reset();
      std::lock_guard<std::mutex> lk(mu_);
      done_.push_back(job);
      return;
    }
    Released released;  // what the worker has finished with: dropped here, when this returns (GIL held)
    {
      py::gil_scoped_release nogil;
      std::unique_lock<std::mutex> lk(mu_);
      released.swap(released_);
      if (pending_values_ > max_pending_) {  // the worker far behind: wait, so that memory stays bounded
        cv_.notify_one();
        done_cv_.wait(lk, [this] { return pending_values_ <= max_pending_; });
      }
      if (!worker_.joinable()) worker_ = std::thread([this] { serve(); });  // (first: it may fail)
      queue_.push_back(job);
      pending_values_ += job->values;
      // waking a sleeping thread is a system call (tens of microseconds on a VM): the worker is woken
      // only from its idle sleep or for a long queue; after it empties the queue it looks again for
      // kPollMs before it goes to sleep
      if (idle_ || static_cast<int64_t>(queue_.size()) >= kWakeAt) {
        idle_ = false;
        cv_.notify_one();
      }
    }
  }

  // the finished steps, oldest first: (step, tag, described, counts, used edges, stats, wratio); wait: all
  std::vector<py::tuple> ready(bool wait) {
    std::deque<std::shared_ptr<Job>> done;
    Released released;
    if (wait && background_) {
      py::gil_scoped_release nogil;
      std::unique_lock<std::mutex> lk(mu_);
      idle_ = false;
      cv_.notify_one();
      done_cv_.wait(lk, [this] { return queue_.empty() && !busy_; });
      done.swap(done_);
      released.swap(released_);
    } else {
      std::lock_guard<std::mutex> lk(mu_);
      if (done_.empty()) return {};
      done.swap(done_);
      released.swap(released_);
    }
    std::vector<py::tuple> out;
    for (auto& j : done)  // as numpy arrays, which the records are made of (no torch tensor made on the way)
      out.push_back(py::make_tuple(j->step, j->tag, j->described, numpy(j->counts, bins_ + 2), numpy(j->used, 2),
                                   numpy(j->stats, 6), numpy(j->wratio, 3)));
    return out;
  }

  // a new numpy array (rows, cols) with these values
  template <typename T>
  static py::array_t<T> numpy(const std::vector<T>& v, int64_t cols) {
    py::array_t<T> a({static_cast<int64_t>(v.size()) / cols, cols});
    if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
    return a;
  }

  int64_t pending() {
    std::lock_guard<std::mutex> lk(mu_);
    return static_cast<int64_t>(queue_.size()) + (busy_ ? 1 : 0);
  }

  void forget() { theta_step_ = -2; }

 private:
  // the updated parameters' data pointers if the kernels can read them in place -- contiguous float32 on
  // the CPU, each value inside its storage
  bool readable_addrs(std::vector<int64_t>& addrs) {
    addrs.clear();
    for (size_t j = 0; j < updated_.size(); ++j) {
      const at::Tensor& p = params_[updated_[j]];
      if (!(p.scalar_type() == at::kFloat && p.is_cpu() && p.is_contiguous() && p.numel() == sizes_[j] &&
            p.storage().nbytes() >= static_cast<size_t>((p.storage_offset() + p.numel()) * 4)))
        return false;
      addrs.push_back(reinterpret_cast<int64_t>(p.data_ptr()));
    }
    return true;
  }

  static void check_fits(const Layout& L, const Job& j) {
    if (L.edges.size(0) != static_cast<int64_t>(j.addrs.size()) || L.wgrad.size(0) != j.w)
      throw std::invalid_argument("the layout does not fit the step's tensors");
  }

  at::Tensor flat() {
    std::vector<at::Tensor> parts;
    for (auto q : updated_) parts.push_back(params_[q].detach().reshape({-1}).to(at::kFloat).cpu());
    if (parts.empty()) return at::empty({0}, at::kFloat);
    return at::cat(parts).contiguous();
  }

  void run(Job& j) {
    const Layout& L = *j.layout;
    int64_t k = static_cast<int64_t>(j.addrs.size());
    summarize_(j.addrs.data(), j.sizes.data(), k, L.tanh.data_ptr<bool>(), L.relu.data_ptr<bool>(),
               L.thr.data_ptr<float>(), L.edges.data_ptr<float>(), j.counts.data(), bins_ + 2, j.stats64.data(),
               j.used.data());
    finish_(j.stats64.data(), k, L.tanh.data_ptr<bool>(), j.std.data(), L.wgrad.data_ptr<int64_t>(), j.w,
            j.stats.data(), j.wratio.data());
  }

  void serve() {
    std::unique_lock<std::mutex> lk(mu_);
    while (true) {
      if (idle_) {
        cv_.wait(lk, [this] { return quit_ || !idle_; });
      } else if (queue_.empty() &&
                 !cv_.wait_for(lk, std::chrono::milliseconds(kPollMs), [this] { return quit_ || !queue_.empty(); })) {
        idle_ = true;  // nothing came for a while: sleep until submit() wakes us
        continue;
      }
      if (quit_) return;
      if (queue_.empty()) continue;
      auto job = queue_.front();
      queue_.pop_front();
      busy_ = true;
      lk.unlock();
      run(*job);
      lk.lock();
      // done with them: the training thread drops them (with the GIL: a storage may have a Python object)
      released_.add(*job);
      busy_ = false;
      pending_values_ -= job->values;
      done_.push_back(std::move(job));  // (the worker never holds a job's last reference: it has py::objects)
      done_cv_.notify_all();
    }
  }

  std::vector<at::Tensor> params_;
  int64_t points_, bins_;
  bool background_;
  int64_t max_pending_;
  SummarizeFn summarize_;
  InPlaceFn in_place_;
  CopyFn copy_;
  FlatFn flat_;
  FinishFn finish_;
  // this capture step
  std::vector<Held> acts_;
  std::shared_ptr<Slots> slots_;
  int64_t gen_ = 0;
  std::vector<size_t> updated_;
  std::vector<int64_t> sizes_, starts_;
  std::shared_ptr<Job> staged_;
  // theta: the parameters before the update (laid end to end), read in place or through torch
  at::Tensor theta_;
  bool theta_readable_ = false;
  std::vector<int64_t> theta_addrs_, theta_sizes_;
  std::vector<size_t> theta_params_;
  int64_t theta_step_ = -2;
  // the sets of tensors seen so far (training thread only), and the worker's queue
  std::unordered_map<std::string, Known> known_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::deque<std::shared_ptr<Job>> queue_, done_;
  Released released_;
  int64_t pending_values_ = 0;
  bool busy_ = false, quit_ = false, idle_ = true;
  static constexpr int kPollMs = 8;
  static constexpr int64_t kWakeAt = 16;
  std::thread worker_;
};

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  py::class_<Steps>(m, "Steps")
      .def(py::init<std::vector<at::Tensor>, int64_t, int64_t, std::vector<uintptr_t>, bool, int64_t>())
      .def("submit_new", &Steps::submit_new)
      .def("begin", &Steps::begin)
      .def("watch", &Steps::watch)
      .def("watch_all", &Steps::watch_all)
      .def("before_update", &Steps::before_update)
      .def("after_update", &Steps::after_update)
      .def("ready", &Steps::ready)
      .def("pending", &Steps::pending)
      .def("forget", &Steps::forget);
}
