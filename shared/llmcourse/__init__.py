"""llmcourse: the code built in the course notebooks, promoted chapter by chapter.

Modules, from the bottom layer up: each imports only from modules listed before it (the layers contract in
pyproject.toml, checked by tests/test_layers.py)::

    runtime          device, threads, seeding, data and cache folders, one builder of a cached artifact (all)
    experiment       the experiment protocol: sweeps widened until the choice is inside, compared seeds (all)
    scaling          compute C = 6ND, isoFLOP optima, power laws and the loss law L(N, D) of Hoffmann et al. (chapter 5)
    drawing          the course's drawing style: colours, boxes, arrows, grids (chapters 3-5)
    data             the plays and their speeches, sliding-window datasets, what a model may read (chapter 2)
    tokenizer        byte-level BPE, GPT-2's encoding offline (chapter 2)
    download         fetching with deadlines and checksums, for the online extras (chapters 5, 6)
    simple_tokenizer the word-level tokenizer and its unknown words (chapter 2)
    tasks            tasks built from the plays: genre, instructions, next sentence, word reversal (chapters 5, 6)
    bow              bag-of-words counts, TF-IDF and cosine similarity (chapter 1)
    ngram            n-gram language models with add-k, interpolated and Kneser-Ney smoothing (chapter 1)
    word2vec         skip-gram with negative sampling (chapter 1)
    rnn              RNN and LSTM language models; the GRU encoder-decoder (chapters 1, 5)
    attention        multi-head attention: causal or bidirectional, self or cross (chapter 3)
    model            GPTConfig, the layers and GPTModel, with GPT-2's and today's options (chapters 4, 5)
    encoder          a BERT-style encoder and the 2017 encoder-decoder, from the same blocks (chapter 4)
    generate         greedy and sampled decoding, with a key-value cache (chapters 4, 5)
    weights          loading GPT-2-layout state dicts into GPTModel (chapter 4)
    checkpoint       crash-safe, checksummed checkpoints of a model, its optimizer and tokenizer (chapter 5)
    muon             the Muon optimizer and the Muon + AdamW pair of today's recipe (chapter 5)
    train            losses, evaluation, the learning-rate schedule and the training loop (chapter 5)
    mlm              BERT's masking, pair packing, both losses, the encoder's pretraining loop (chapter 5)
    seq2seq          character batches, the three models compared, training, decoding, scores (chapter 5)
    course           the course's settings and trained artifacts: tokenizer, GPT, encoder (chapters 5, 6)
    finetune         the fine-tuning loop shared by classification and instruction tuning (chapter 6)
    classify         classification heads and pooling, training parts of a model, metrics (chapter 6)
    instruct         instruction records, prompt template, collate with -100, exact match (chapter 6)
    lora             low-rank adaptation: LoRALinear, wrapping and merging (chapter 6)
    diagrams         drawn figures of the models and their data (chapters 1-6)
"""

from llmcourse.runtime import use_recommended_threads

__version__ = "0.1.0"

# Leave one core to the rest of the machine (see runtime.recommended_threads); LLMCOURSE_THREADS overrides.
use_recommended_threads()
