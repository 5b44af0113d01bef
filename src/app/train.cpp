// pdegen train: validate the deck, then run the training (app/trainer.hpp) on every rank.
#include "app/trainer.hpp"
#include "app/verbs.hpp"
#include "parallel/communicator.hpp"

namespace pdegen::app {

int run_train(const CliOptions& options) {
  const ValidatedDeck v = validate_deck(options);
  return train(v.deck, v.plan, to_yaml(v.deck), Communicator());
}

}  // namespace pdegen::app
