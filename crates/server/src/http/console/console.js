// Carteiro's console: plain JavaScript over the broker's /api/ (docs/http.md).
// Every value from the broker is set as text (textContent), never as markup.
'use strict';

(() => {
  /** How often the open view is read again, ms. */
  const POLL_MS = 2000;
  /** The chart's width in time, s (the broker keeps 300 samples, one a second). */
  const CHART_SECONDS = 300;
  const SVG = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);
  const views = ['view-topics', 'view-topic', 'view-groups', 'view-group'];
  let route = { view: 'topics', name: null };
  let poll = null;
  /** Bumped on every route change, so a late answer for an old view is dropped. */
  let epoch = 0;
  /** The topic whose messages were last loaded, so a poll does not reload them. */
  let messagesOf = null;

  // ---- helpers ----------------------------------------------------------

  class ApiError extends Error {
    constructor(message, status, body) {
      super(message);
      this.status = status;
      this.body = body;
    }
  }

  async function api(path, options = {}) {
    const response = await fetch('/api' + path, {
      ...options,
      headers: { Accept: 'application/json', ...(options.headers || {}) },
    });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const message = body && body.error ? body.error.message : `${response.status} ${response.statusText}`;
      throw new ApiError(message, response.status, body);
    }
    return body;
  }

  function element(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value !== undefined && value !== null) node.setAttribute(name, String(value));
    }
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /** A table cell holding `text`, with the raw value in data-value for scripts. */
  function cell(field, text, value, className) {
    const td = element('td', { 'data-field': field, class: className });
    td.textContent = text;
    if (value !== undefined) td.dataset.value = String(value);
    return td;
  }

  const numberFormat = new Intl.NumberFormat('en-US');
  const count = (n) => numberFormat.format(n);
  function bytes(n) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let value = n;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
  }
  function rate(n) {
    if (n === null || n === undefined) return '–';
    return n >= 100 ? count(Math.round(n)) : n.toFixed(1);
  }
  function duration(ms) {
    if (ms === null || ms === undefined) return 'forever';
    const units = [['d', 86400000], ['h', 3600000], ['min', 60000], ['s', 1000]];
    for (const [unit, size] of units) {
      if (ms >= size && ms % size === 0) return `${ms / size} ${unit}`;
    }
    return `${ms} ms`;
  }
  const time = (ms) => new Date(ms).toLocaleString();
  function retention(topic) {
    const parts = [];
    parts.push(topic.retention_ms === null ? 'no age limit' : duration(topic.retention_ms));
    parts.push(topic.retention_bytes === null ? 'no size limit' : bytes(topic.retention_bytes));
    return parts.join(', ');
  }
  function flush(topic) {
    return topic.flush === 'interval' ? `every ${duration(topic.flush_interval_ms)}` : topic.flush;
  }

  function showError(message) {
    $('error').textContent = message || '';
    $('error').hidden = !message;
  }
  function showNotice(message) {
    $('notice').textContent = message || '';
    $('notice').hidden = !message;
  }
  function setStatus(ok, text) {
    $('status').dataset.state = ok ? 'ok' : 'error';
    $('status').textContent = text;
  }

  /** Asks for confirmation in the page's own dialog; resolves true or false. */
  function confirmAction(text, yesLabel) {
    const dialog = $('confirm');
    $('confirm-text').textContent = text;
    $('confirm-yes').textContent = yesLabel;
    return new Promise((resolve) => {
      const finish = (answer) => {
        $('confirm-yes').onclick = null;
        $('confirm-no').onclick = null;
        dialog.oncancel = null;
        if (dialog.open) dialog.close();
        resolve(answer);
      };
      $('confirm-yes').onclick = () => finish(true);
      $('confirm-no').onclick = () => finish(false);
      dialog.oncancel = (event) => {
        event.preventDefault();
        finish(false);
      };
      dialog.showModal();
    });
  }

  // ---- routing ----------------------------------------------------------

  function parseRoute() {
    const parts = location.hash.replace(/^#\/?/, '').split('/');
    const name = parts.length > 1 ? decodeURIComponent(parts.slice(1).join('/')) : null;
    if (parts[0] === 'groups') return { view: name ? 'group' : 'groups', name };
    return { view: name ? 'topic' : 'topics', name };
  }

  function go() {
    route = parseRoute();
    epoch += 1;
    messagesOf = null;
    showError('');
    for (const id of views) $(id).hidden = id !== `view-${route.view}`;
    $('nav-topics').classList.toggle('current', route.view.startsWith('topic'));
    $('nav-groups').classList.toggle('current', route.view.startsWith('group'));
    $('message-detail').hidden = true;
    clearInterval(poll);
    refresh();
    poll = setInterval(refresh, POLL_MS);
  }

  async function refresh() {
    const mine = epoch;
    try {
      if (route.view === 'topics') await showTopics(mine);
      else if (route.view === 'topic') await showTopic(mine, route.name);
      else if (route.view === 'groups') await showGroups(mine);
      else await showGroup(mine, route.name);
      if (mine === epoch) setStatus(true, `updated ${new Date().toLocaleTimeString()}`);
    } catch (e) {
      if (mine !== epoch) return;
      setStatus(false, 'not updated');
      showError(e.message);
    }
  }

  // ---- topics -----------------------------------------------------------

  async function showTopics(mine) {
    const { topics } = await api('/topics');
    if (mine !== epoch) return;
    const body = $('topics-table').tBodies[0];
    body.replaceChildren(
      ...topics.map((t) => {
        const link = element('a', { href: `#/topics/${encodeURIComponent(t.name)}` }, t.name);
        const row = element('tr', { 'data-topic': t.name });
        row.append(
          element('td', { 'data-field': 'name' }, link),
          cell('partitions', count(t.partition_count), t.partition_count, 'num'),
          cell('records', count(t.records), t.records, 'num'),
          cell('size', bytes(t.size_bytes), t.size_bytes, 'num'),
          cell('produced-rate', rate(t.rate && t.rate.produced_per_s), t.rate ? t.rate.produced_per_s : '', 'num'),
          cell('fetched-rate', rate(t.rate && t.rate.fetched_per_s), t.rate ? t.rate.fetched_per_s : '', 'num'),
          cell('retention', retention(t)),
          cell('flush', flush(t)),
        );
        return row;
      }),
    );
    $('topics-empty').hidden = topics.length > 0;
  }

  async function showTopic(mine, name) {
    const path = `/topics/${encodeURIComponent(name)}`;
    const [topic, rates] = await Promise.all([
      api(path),
      api(`/rates?topic=${encodeURIComponent(name)}&seconds=${CHART_SECONDS}`),
    ]);
    if (mine !== epoch) return;
    $('view-topic').dataset.topic = topic.name;
    $('topic-name').textContent = topic.name;
    const facts = [
      ['Partitions', count(topic.partition_count)],
      ['Records', count(topic.records)],
      ['Size', `${bytes(topic.size_bytes)} in ${count(topic.segments)} segments`],
      ['Retention', retention(topic)],
      ['Flush', flush(topic)],
      ['Segments roll at', `${bytes(topic.segment_bytes)} or ${duration(topic.segment_ms)}`],
      ['Largest batch', bytes(topic.max_batch_bytes)],
      ['Created', time(topic.created_ms)],
    ];
    $('topic-config').replaceChildren(...facts.flatMap(([k, v]) => [element('dt', {}, k), element('dd', {}, v)]));
    $('partitions-table').tBodies[0].replaceChildren(
      ...topic.partitions.map((p) => {
        const row = element('tr', { 'data-partition': p.partition });
        row.append(
          cell('partition', p.partition, p.partition, 'num'),
          cell('start-offset', count(p.start_offset), p.start_offset, 'num'),
          cell('end-offset', count(p.end_offset), p.end_offset, 'num'),
          cell('high-watermark', count(p.high_watermark), p.high_watermark, 'num'),
          cell('size', bytes(p.size_bytes), p.size_bytes, 'num'),
          cell('segments', count(p.segments), p.segments, 'num'),
        );
        return row;
      }),
    );
    const select = $('messages-partition');
    if (select.options.length !== topic.partition_count) {
      select.replaceChildren(...topic.partitions.map((p) => element('option', { value: p.partition }, p.partition)));
    }
    drawChart(rates.topics[0] ? rates.topics[0].samples : []);
    if (messagesOf !== topic.name) {
      messagesOf = topic.name;
      await loadMessages(mine);
    }
  }

  /** Draws produced and fetched records/s of the last CHART_SECONDS. */
  function drawChart(samples) {
    const svg = $('rate-chart');
    // Drawn at the size it is shown, so text keeps its proportions.
    const width = Math.max(320, Math.round(svg.getBoundingClientRect().width) || 640);
    const height = 200;
    svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    const pad = { left: 48, right: 10, top: 12, bottom: 22 };
    const now = samples.length ? samples[samples.length - 1].t_ms : Date.now();
    const from = now - CHART_SECONDS * 1000;
    const peak = Math.max(0, ...samples.map((s) => Math.max(s.produced_per_s, s.fetched_per_s)));
    const top = niceCeiling(peak);
    const x = (t) => pad.left + ((t - from) / (now - from)) * (width - pad.left - pad.right);
    const y = (v) => height - pad.bottom - (v / top) * (height - pad.top - pad.bottom);
    const shape = (tag, attributes, text) => {
      const node = document.createElementNS(SVG, tag);
      for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, String(v));
      if (text !== undefined) node.textContent = text;
      return node;
    };
    const children = [];
    for (const fraction of [0, 0.5, 1]) {
      const v = top * fraction;
      children.push(shape('line', { class: 'grid', x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v) }));
      children.push(shape('text', { class: 'label', x: pad.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, rate(v)));
    }
    children.push(shape('text', { class: 'label', x: pad.left, y: height - 6 }, `${CHART_SECONDS / 60} min ago`));
    children.push(shape('text', { class: 'label', x: width - pad.right, y: height - 6, 'text-anchor': 'end' }, 'now'));
    const line = (id, key) =>
      shape('polyline', {
        id,
        points: samples.map((s) => `${x(s.t_ms).toFixed(1)},${y(s[key]).toFixed(1)}`).join(' '),
      });
    children.push(line('rate-produced', 'produced_per_s'), line('rate-fetched', 'fetched_per_s'));
    svg.replaceChildren(...children);
    const last = samples[samples.length - 1];
    const max = (key) => Math.max(0, ...samples.map((s) => s[key]));
    svg.dataset.samples = String(samples.length);
    svg.dataset.producedMax = String(max('produced_per_s'));
    svg.dataset.fetchedMax = String(max('fetched_per_s'));
    $('rate-produced-now').textContent = rate(last && last.produced_per_s);
    $('rate-fetched-now').textContent = rate(last && last.fetched_per_s);
  }

  /** 1, 2 or 5 times a power of ten, at least `v` (and at least 1). */
  function niceCeiling(v) {
    if (v <= 1) return 1;
    const power = 10 ** Math.floor(Math.log10(v));
    for (const step of [1, 2, 5, 10]) {
      if (step * power >= v) return step * power;
    }
    return 10 * power;
  }

  // ---- messages ---------------------------------------------------------

  function messagesQuery() {
    const limit = $('messages-limit').value.trim();
    const query = new URLSearchParams({ limit });
    const start = $('messages-start').value;
    if (start === 'offset') query.set('offset', $('messages-offset').value.trim());
    if (start === 'time') {
      const chosen = new Date($('messages-time').value).getTime();
      query.set('time', Number.isNaN(chosen) ? $('messages-time').value : String(chosen));
    }
    return query;
  }

  async function loadMessages(mine) {
    const name = route.name;
    const partition = $('messages-partition').value || '0';
    const path = `/topics/${encodeURIComponent(name)}/partitions/${encodeURIComponent(partition)}/messages`;
    const answer = await api(`${path}?${messagesQuery()}`);
    if (mine !== epoch) return;
    $('message-detail').hidden = true;
    const table = $('messages-table');
    table.dataset.partition = String(answer.partition);
    table.dataset.nextOffset = String(answer.next_offset);
    table.tBodies[0].replaceChildren(
      ...answer.messages.map((m) => {
        const row = element('tr', { 'data-offset': m.offset, class: 'clickable' });
        row.append(
          cell('offset', m.offset, m.offset, 'num'),
          cell('time', time(m.timestamp_ms), m.timestamp_ms),
          cell('key', preview(m.key), m.key.encoding, 'preview'),
          cell('value', preview(m.value), m.value.encoding, 'preview'),
          cell('headers', m.headers_total, m.headers_total, 'num'),
        );
        row.addEventListener('click', () => {
          for (const other of table.tBodies[0].rows) other.classList.remove('selected');
          row.classList.add('selected');
          openMessage(m);
        });
        return row;
      }),
    );
    const shown = answer.messages.length;
    const more = answer.next_offset < answer.high_watermark ? `; more from offset ${count(answer.next_offset)}` : '';
    $('messages-summary').textContent =
      `Partition ${answer.partition}: ${count(shown)} message${shown === 1 ? '' : 's'} from offset ` +
      `${count(answer.from_offset)} (the partition holds ${count(answer.start_offset)} to ` +
      `${count(answer.high_watermark)})${more}.`;
  }

  function preview(shown) {
    if (shown.encoding === 'null') return 'null';
    const text = shown.text.length > 120 ? `${shown.text.slice(0, 120)}…` : shown.text;
    return shown.encoding === 'hex' ? `0x${text}` : text;
  }

  function fillShown(id, shown) {
    let text = shown.encoding === 'null' ? 'null' : shown.text;
    if (shown.encoding === 'json') {
      try {
        text = JSON.stringify(JSON.parse(shown.text), null, 2);
      } catch (_) {
        text = shown.text;
      }
    }
    $(id).textContent = text;
    $(id).dataset.encoding = shown.encoding;
    $(`${id}-encoding`).textContent = shown.encoding === 'utf8' ? 'UTF-8' : shown.encoding.toUpperCase();
    $(`${id}-note`).textContent = shown.truncated
      ? `first ${bytes(shown.encoding === 'hex' ? shown.text.length / 2 : shown.text.length)} of ${bytes(shown.size)}`
      : shown.encoding === 'null' ? '' : bytes(shown.size);
  }

  function openMessage(m) {
    $('message-offset').textContent = m.offset;
    $('message-time').textContent = time(m.timestamp_ms);
    $('message-detail').dataset.offset = String(m.offset);
    fillShown('message-key', m.key);
    fillShown('message-value', m.value);
    const rows = m.headers.map((h) =>
      element('tr', { 'data-header': h.key }, element('td', {}, h.key), element('td', {}, preview(h.value))),
    );
    if (m.headers_total > m.headers.length) {
      rows.push(element('tr', {}, element('td', { colspan: 2 }, `and ${m.headers_total - m.headers.length} more`)));
    }
    $('message-headers').tBodies[0].replaceChildren(...rows);
    $('message-detail').hidden = false;
    $('message-detail').scrollIntoView({ block: 'nearest' });
  }

  // ---- groups -----------------------------------------------------------

  function kind(group) {
    if (group.kind === 'assigned') return `assigned (gRPC, ${group.strategy})`;
    if (group.kind === 'classic') return `classic (Kafka, ${group.protocol_type}${group.protocol ? `, ${group.protocol}` : ''})`;
    return '–';
  }

  async function showGroups(mine) {
    const { groups } = await api('/groups');
    if (mine !== epoch) return;
    $('groups-table').tBodies[0].replaceChildren(
      ...groups.map((g) => {
        const link = element('a', { href: `#/groups/${encodeURIComponent(g.group)}` }, g.group);
        const row = element('tr', { 'data-group': g.group });
        row.append(
          element('td', { 'data-field': 'name' }, link),
          cell('state', g.state, g.state),
          cell('kind', kind(g), g.kind || ''),
          cell('members', count(g.member_count), g.member_count, 'num'),
          cell('partitions', count(g.partitions.length), g.partitions.length, 'num'),
          cell('lag', count(g.lag), g.lag, 'num'),
        );
        return row;
      }),
    );
    $('groups-empty').hidden = groups.length > 0;
  }

  async function showGroup(mine, name) {
    const g = await api(`/groups/${encodeURIComponent(name)}`);
    if (mine !== epoch) return;
    $('view-group').dataset.group = g.group;
    $('group-name').textContent = g.group;
    $('group-state').textContent = g.state;
    $('group-kind').textContent = kind(g);
    $('group-generation').textContent = g.generation;
    $('group-lag').textContent = count(g.lag);
    $('group-lag').dataset.value = String(g.lag);
    $('members-table').tBodies[0].replaceChildren(
      ...g.members.map((m) =>
        element(
          'tr',
          { 'data-member': m.member_id },
          element('td', {}, m.member_id),
          element('td', {}, m.client_id),
          element('td', { 'data-field': 'partitions' }, m.partitions.map((p) => `${p.topic}/${p.partition}`).join(', ') || 'none'),
        ),
      ),
    );
    $('members-empty').hidden = g.members.length > 0;
    $('group-partitions-table').tBodies[0].replaceChildren(
      ...g.partitions.map((p) => {
        const row = element('tr', { 'data-topic': p.topic, 'data-partition': p.partition });
        row.append(
          cell('topic', p.topic),
          cell('partition', p.partition, p.partition, 'num'),
          cell('committed', count(p.committed_offset), p.committed_offset, 'num'),
          cell('high-watermark', count(p.high_watermark), p.high_watermark, 'num'),
          cell('lag', count(p.lag), p.lag, 'num'),
        );
        return row;
      }),
    );
  }

  // ---- writes -----------------------------------------------------------

  async function createTopic(event) {
    event.preventDefault();
    showError('');
    showNotice('');
    const name = $('create-topic-name').value.trim();
    const raw = $('create-topic-partitions').value.trim();
    // A number as a number; anything else as typed, for the broker to name what is wrong.
    const partitions = /^\d+$/.test(raw) ? Number(raw) : raw;
    const yes = await confirmAction(`Create topic "${name}" with ${raw} partition(s)?`, 'Create');
    if (!yes) return;
    try {
      const topic = await api('/topics', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ name, partitions }),
      });
      $('create-topic-name').value = '';
      showNotice(`Topic "${topic.name}" created with ${topic.partition_count} partition(s).`);
      refresh();
    } catch (e) {
      showError(`Not created: ${e.message}`);
    }
  }

  async function deleteTopic() {
    const name = route.name;
    showError('');
    showNotice('');
    const yes = await confirmAction(
      `Delete topic "${name}", every record in it and every group's committed offsets of it? This cannot be undone.`,
      'Delete',
    );
    if (!yes) return;
    try {
      await api(`/topics/${encodeURIComponent(name)}`, { method: 'DELETE' });
      location.hash = '#/topics';
      showNotice(`Topic "${name}" deleted.`);
    } catch (e) {
      showError(`Not deleted: ${e.message}`);
    }
  }

  // ---- start ------------------------------------------------------------

  function start() {
    $('create-topic-form').addEventListener('submit', createTopic);
    $('delete-topic').addEventListener('click', deleteTopic);
    $('messages-form').addEventListener('submit', (event) => {
      event.preventDefault();
      showError('');
      loadMessages(epoch).catch((e) => showError(e.message));
    });
    $('messages-start').addEventListener('change', () => {
      const start = $('messages-start').value;
      $('messages-offset-label').hidden = start !== 'offset';
      $('messages-time-label').hidden = start !== 'time';
    });
    $('message-close').addEventListener('click', () => {
      $('message-detail').hidden = true;
    });
    window.addEventListener('hashchange', go);
    if (!location.hash) history.replaceState(null, '', '#/topics');
    go();
  }

  start();
})();
