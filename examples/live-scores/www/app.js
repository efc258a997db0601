// The live-scores page: a snapshot of every match, then live events, over ferry.
'use strict';

const params = new URLSearchParams(location.search);
const client = ferry.connect('/ferry', { transport: params.get('transport') || 'auto' });
const matches = new Map(); // id -> match state
const el = (id) => document.getElementById(id);

// What the page rendered, exposed for the end-to-end tests: per match the event number the
// snapshot started from and every live event number applied after it. In a cluster also the
// node serving the page (and every one it was shown), the publisher's run, the snapshots
// checked against what the page shows and those that disagreed (mismatches), the events
// that came before the first snapshot (early, skipped), and the events the publisher
// published again after a failed try that had worked after all (republished, skipped).
window.demo = {
  received: 0, resumes: 0, resets: 0, duplicates: 0, gaps: 0, base: {}, applied: {}, transport: null,
  node: null, nodes: [], run: null, checked: 0, mismatches: 0, early: 0, restarts: 0, republished: 0,
};
// A new page, and a page after a reset, waits for a snapshot: one node sends it first thing;
// in a cluster the publisher publishes one every second (server.c says why).
let waiting = true;
let asked = 0; // whoami questions sent: only the answer to the last one is shown

const LABEL = {
  kickoff: 'Kick-off', 'second-half': 'Second half', 'half-time': 'Half time',
  'full-time': 'Full time', fixture: 'Next fixture', goal: 'Goal', yellow: 'Yellow card', red: 'Red card',
};

function statusText(m) {
  if (m.status === 'live') return `${m.minute}'`;
  if (m.status === 'half-time') return 'HT';
  if (m.status === 'full-time') return 'FT';
  return 'Scheduled';
}

function feedItem(e, m) {
  const li = document.createElement('li');
  const icon = { goal: 'goal', yellow: 'yellow', red: 'red' }[e.kind] || 'whistle';
  const who = e.team ? ` · ${e.team === 'home' ? m.home : m.away}` : '';
  const player = e.player ? ` (${e.player})` : '';
  const score = e.kind === 'goal' ? ` ${e.score[0]}–${e.score[1]}` : '';
  li.innerHTML = `<span class="min"></span><span class="icon ${icon}"></span><span></span>`;
  li.children[0].textContent = e.minute ? `${e.minute}'` : '';
  li.children[2].textContent = `${LABEL[e.kind] || e.kind}${who}${player}${score}`;
  if (e.kind === 'goal') li.classList.add('goal-line');
  return li;
}

function render(m, flash) {
  let card = document.getElementById('match-' + m.id);
  if (!card) {
    card = document.createElement('section');
    card.className = 'match';
    card.id = 'match-' + m.id;
    card.innerHTML = `<div class="top"><span class="pill"></span><span class="num"></span></div>
      <div class="teams"><span class="home"></span><span class="score h"></span>
      <span class="away"></span><span class="score a"></span></div><ul class="feed"></ul>`;
    el('board').appendChild(card);
  }
  const pill = card.querySelector('.pill');
  pill.textContent = statusText(m);
  pill.className = 'pill' + (m.status === 'live' ? ' live' : '');
  card.querySelector('.num').textContent = `Match ${m.id}`;
  card.querySelector('.home').textContent = m.home;
  card.querySelector('.away').textContent = m.away;
  card.querySelector('.h').textContent = m.score[0];
  card.querySelector('.a').textContent = m.score[1];
  const feed = card.querySelector('.feed');
  feed.replaceChildren(...m.feed.slice(-5).reverse().map((e) => feedItem(e, m)));
  if (flash) {
    card.classList.remove('flash');
    void card.offsetWidth;
    card.classList.add('flash');
  }
}

// A snapshot after the first one (a cluster's): it holds exactly the events published
// before it, so it must agree with the page, match by match.
function check(s) {
  for (const x of s.matches) {
    const m = matches.get(x.id);
    if (!m) continue;
    demo.checked++;
    if (x.n > m.n) demo.gaps++; // events before the snapshot never came
    else if (x.n < m.n || x.score[0] !== m.score[0] || x.score[1] !== m.score[1] ||
      x.status !== m.status || x.minute !== m.minute || x.home !== m.home) demo.mismatches++;
  }
}

function snapshot(s) {
  const run = s.run || null;
  if (!waiting && run === demo.run) return check(s);
  if (demo.run !== null && run !== demo.run) demo.restarts++; // a new publisher: new matches
  waiting = false;
  demo.run = run;
  el('board').replaceChildren();
  matches.clear();
  for (const m of s.matches) {
    matches.set(m.id, m);
    demo.base[m.id] = m.n;
    demo.applied[m.id] = [];
    render(m, false);
  }
}

function event(e) {
  if (!waiting && (e.run || null) !== demo.run) waiting = true; // the publisher restarted
  if (waiting) { demo.early++; return; }
  const m = matches.get(e.match);
  if (!m) return;
  if (e.n <= m.n) {
    // The publisher's own retry ("again", server.c), or one ferry delivered twice.
    if (e.again) demo.republished++;
    else demo.duplicates++;
    return;
  }
  if (e.n !== m.n + 1) demo.gaps++;
  m.n = e.n;
  m.minute = e.minute;
  m.score = e.score;
  m.status = e.status;
  if (e.home) { m.home = e.home; m.away = e.away; }
  if (e.kind === 'fixture') m.feed = [];
  if (e.kind !== 'minute') m.feed = m.feed.concat([e]).slice(-8);
  demo.applied[e.match].push(e.n);
  render(m, e.kind === 'goal');
}

// While the connection is not open the scores on screen may be behind: the cards say so
// until the client has resumed (and caught up on what it missed).
function badge() {
  const b = el('badge');
  const state = client.state;
  const t = client.transport;
  const kind = state === 'open' ? t : state;
  b.className = 'badge ' + kind;
  b.textContent = state === 'open' ? (t === 'websocket' ? 'WebSocket' : 'Long-polling')
    : state === 'closed' ? 'Closed' : 'Reconnecting…';
  demo.transport = state === 'open' ? t : null;
  const stale = state !== 'open' && matches.size > 0;
  el('board').classList.toggle('stale', stale);
  el('stale').textContent = stale ? 'Connection lost: these scores may be out of date.' : '';
}

// What a reset means, for someone watching the scores.
const RESET = {
  unknown: 'Reconnected: the server had restarted, scores reloaded',
  shutdown: 'Reconnected: the server had restarted, scores reloaded',
  expired: 'Reconnected after a long time away: scores reloaded',
  overflow: 'Reconnected: this page had fallen too far behind, scores reloaded',
  server: 'Reconnected: the server ended the old connection, scores reloaded',
  closed: 'Reconnected: the old connection had been closed, scores reloaded',
  forked: 'Reconnected: this page\'s connection was in use elsewhere too, so it was replaced; scores reloaded',
};

// Which node serves the page: asked after every open (a new session, a resume, a move to
// another transport), answered by the node that receives the question (server.c). A single
// server does not answer, and the page shows no node.
function node(d) {
  if (d.ask !== asked) return; // the answer to an earlier question, from before a move
  demo.node = d.node;
  if (demo.nodes[demo.nodes.length - 1] !== d.node) demo.nodes.push(d.node);
  el('node').textContent = `served by ${d.node}`;
}

client.on('message', (d) => {
  demo.received++;
  el('received').textContent = demo.received;
  if (d.type === 'snapshot') snapshot(d);
  else if (d.type === 'event') event(d);
  else if (d.type === 'node') node(d);
});
client.on('open', (o) => {
  if (o.resumed) demo.resumes++;
  el('resumes').textContent = demo.resumes;
  badge();
  asked++;
  client.send({ whoami: asked });
});
client.on('state', badge);
client.on('transport', badge);
client.on('reset', (r) => {
  demo.resets++;
  waiting = true;
  el('note').textContent = RESET[r.reason] || 'Reconnected: scores reloaded';
});
// A server that refuses the page (its address is not allowed): the client keeps trying,
// slowly; say why the scores do not come.
client.on('error', (e) => {
  if (client.state !== 'open') el('note').textContent = `The server refused this page (${e.text}); retrying`;
});
client.on('open', () => {
  if (el('note').textContent.startsWith('The server refused')) el('note').textContent = '';
});
window.client = client;
