// The one parameter table: every tensor of a model, described once. Load, save
// and random initialisation (format), upload, gradients, the test-time SGD list
// and download (engine) all walk it. Adding a tensor means one line in
// param_table() (lib/format/params.cpp).
#pragma once

#include "ttt/config.hpp"
#include "ttt/safetensors.hpp"  // DType

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ttt {

struct Model;

enum class ParamRole {
  Embedding,  // wte (V, D)
  Head,       // lm_head (D, V), untied models only
  Norm,       // RMSNorm gains: initialised to ones
  Linear,     // [in, out] matrices: normal(0, init_std)
};

// One tensor of the file format (model.safetensors).
struct ParamSpec {
  std::string name;            // "blocks.3.attn.wq"
  std::vector<int64_t> shape;  // as stored
  ParamRole role = ParamRole::Linear;
  int block = -1;              // block index, -1 outside the blocks
  // The outer (pre-)training optimiser updates every tensor, as the official
  // spec_outer ("**"); these flags say what else applies to one.
  bool trainable = false;      // taken by the test-time step (inner loop; today: the prime MLPs)
  bool decays = false;         // the outer AdamW's weight decay applies: every tensor, norms included,
                               // as the official optax.adamw with no mask (emb_wd = true)
  int device = -1;             // index into ParamTable::device
  int64_t col = 0;             // first column of this tensor inside its device tensor
  std::function<std::vector<float>&(Model&)> host;  // its storage in a Model
  int64_t size() const;
};

// One buffer on the device: a file tensor, or several concatenated column-wise
// ([Wq | Wk | Wv] (D, 3D), [W1 | W3] (D, 2I)) so that each is one GEMM.
struct DeviceTensor {
  std::string name;        // "blocks.3.attn.wqkv"
  int64_t rows = 0, cols = 0;
  bool trainable = false;  // every part is trainable (parts never mix)
  std::vector<int> parts;  // ParamTable::params indices, left to right; empty: ones (qk-norm off)
  // Storage type on the device. f32 unless store_weights() narrows it: kernels
  // that read it widen to f32 as they read (norm gains stay f32, and so do a
  // training session's live copies of the trainable tensors and their gradients).
  DType dtype = DType::F32;
  int64_t size() const { return rows * cols; }
  size_t bytes() const { return size_t(size()) * dtype_size(dtype); }
};

struct ParamTable {
  std::vector<ParamSpec> params;       // file order
  std::vector<DeviceTensor> device;    // upload order
  // Index of the device tensor with this name; throws ttt::Error naming it when absent.
  int device_index(const std::string& name) const;
  bool has_device(const std::string& name) const;
  // A device tensor's contents gathered from the model (row-major rows x cols).
  std::vector<float> pack(int device, const Model& m) const;
  // The same in the device tensor's storage type (exact when the model's
  // values came from a file of that type: f16 and bf16 round-trip through f32).
  std::vector<uint8_t> pack_stored(int device, const Model& m) const;
  // The inverse: scatters a device tensor's contents into the model's tensors.
  void unpack(int device, const std::vector<float>& data, Model& m) const;
  size_t num_parameters() const;
  // Stores every weight matrix (embedding, head, attention, MLP and prime MLP
  // projections) as t; norm gains stay f32. The prime MLPs' stored values
  // are where test-time training starts: a session that trains keeps its
  // own f32 copy (widened exactly) and f32 gradients.
  void store_weights(DType t);
  size_t device_bytes() const;  // every device tensor in its storage type
};

ParamTable param_table(const Config& c);

}  // namespace ttt
